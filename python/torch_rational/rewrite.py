"""One-call model rewrite: swap the fixed activations of a model for learnable ones.

``replace_activations`` walks the module tree and replaces activation *modules* (``nn.ReLU``, ...).
Functional calls inside ``forward`` (``F.relu(x)``, ``torch.tanh(x)``, ``x.sigmoid()``) are not
modules and cannot be found that way; ``replace_functional_activations`` handles them for models
that ``torch.fx.symbolic_trace`` can trace.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import inspect
import logging
import warnings
from collections import Counter
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn.functional as F
from torch import nn

from .families import (
    FAMILIES,
    LEARNABLE_TYPES,
    activation_parameters,
    check_model,
    init_name,
    remember_init,
)
from .fit import activation_function
from .modules import PAU, Rational

__all__ = [
    "DEFAULT_TARGETS",
    "ACTIVATION_ALIASES",
    "PROBE_GRID",
    "ModuleFunction",
    "function_name",
    "replace_activations",
    "replace_functional_activations",
    "find_activations",
    "param_groups",
]

_log = logging.getLogger("torch_rational")

#: Activation module types replaced by default.
DEFAULT_TARGETS: Tuple[Type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Softplus,
)

Factory = Union[None, str, Type[nn.Module], Callable[..., Optional[nn.Module]]]
# The activation classes to replace (None: DEFAULT_TARGETS), and the qualified module names (glob
# patterns) to leave alone: the same two options in every function that finds or replaces.
Targets = Optional[Sequence[Type[nn.Module]]]
Exclude = Union[str, Sequence[str]]

#: Activation classes of other libraries, keyed by class or by qualified class name
#: (``"module.QualName"``, so the library need not be imported), -> the named function they compute
#: (see :func:`torch_rational.activation_function`), or ``None`` for a function without a name: the
#: replacement is then fitted to the module itself. With the default ``targets``, a module whose class
#: (or a base class) is here is replaced like a torch activation. Extend it for your own classes:
#: ``torch_rational.rewrite.ACTIVATION_ALIASES[MyGELU] = "gelu"``.
ACTIVATION_ALIASES: Dict[Union[str, type], Optional[str]] = {
    "timm.layers.activations.GELU": "gelu",
    "timm.layers.activations.GELUTanh": None,
    "timm.layers.activations.QuickGELU": None,
    "timm.layers.activations.Swish": "swish",
    "timm.layers.activations.Mish": "mish",
    "timm.layers.activations.Sigmoid": "sigmoid",
    "timm.layers.activations.Tanh": "tanh",
    "timm.layers.activations.HardSwish": "hardswish",
    "timm.layers.activations.HardSigmoid": None,
    "timm.layers.activations.HardMish": None,
    "timm.layers.activations_me.SwishMe": "swish",
    "timm.layers.activations_me.MishMe": "mish",
    "timm.layers.activations_me.HardSwishMe": "hardswish",
    "timm.layers.activations_me.HardSigmoidMe": None,
    "timm.layers.activations_me.HardMishMe": None,
}

# Named functions a module is compared with, on PROBE_GRID (identity is left out: Dropout and
# Identity compute it, and they are not activations).
_PROBED_NAMES = ("relu", "relu6", "leaky_relu", "swish", "gelu", "tanh", "sigmoid", "elu", "celu", "selu",
                 "softplus", "mish", "hardswish", "hardtanh")
#: Where a module is evaluated to find the function it computes: wide enough that relu6 and relu,
#: tanh and hardtanh differ, fine enough that kinks show.
PROBE_GRID = torch.linspace(-8.0, 8.0, 1601, dtype=torch.float64)
_INIT_RANGE = 3.0  # the shipped inits are fitted on [-3, 3]


class ModuleFunction:
    """A fixed activation module as a float64 CPU function, for the fitter and the probe. A private
    copy in eval mode: the model's own module may live on another device or dtype and must not be
    touched, and a random activation (RReLU) computes its mean function in eval mode. A class, not a
    closure, so a module that keeps its init callable still pickles."""

    def __init__(self, module: nn.Module) -> None:
        # Frozen rather than run under no_grad: a PWLU keeps its init as its forward while it
        # collects statistics, and gradients must flow to x through it (not to this copy).
        self.module = copy.deepcopy(module).to(device="cpu", dtype=torch.float64).eval().requires_grad_(False)
        self.__name__ = repr(module)  # what a module fitted to it records as its init

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # A copy (inplace=True activations would overwrite the caller's grid) in the copy's float64 on
        # the CPU, and back (a PWLU's statistics phase calls this on its input, any dtype and device).
        return self.module(x.to("cpu", torch.float64, copy=True)).to(x.device, x.dtype)


@functools.lru_cache(maxsize=None)
def _named_values() -> Dict[str, torch.Tensor]:
    return {name: activation_function(name, PROBE_GRID) for name in _PROBED_NAMES}


def _same_function(values: torch.Tensor, reference: torch.Tensor) -> bool:
    return bool(((values - reference).abs() <= 1e-6 * (1.0 + reference.abs())).all())


def _probe(module: nn.Module) -> Optional[torch.Tensor]:
    """``module`` evaluated on PROBE_GRID, or None when it is not an element-wise function of one
    tensor (it raises, or returns something of another shape)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = ModuleFunction(module)(PROBE_GRID)
    except Exception:  # any module may be probed; one that cannot run on a 1-D float64 tensor is no activation
        return None
    if not isinstance(values, torch.Tensor) or values.shape != PROBE_GRID.shape or not values.is_floating_point():
        return None
    return values.to(torch.float64)


def function_name(values: torch.Tensor) -> Optional[str]:
    """The named function (``"gelu"``, ``"leaky_relu_0.2"``, ...) whose values on PROBE_GRID are
    ``values`` to 1e-6 (relative), or None."""
    for name, reference in _named_values().items():
        if _same_function(values, reference):
            return name
    at_minus_one = int(torch.argmin((PROBE_GRID + 1.0).abs()))
    slope = float(f"{float(values[at_minus_one] / PROBE_GRID[at_minus_one]):.6g}")
    if 0.0 < slope < 1.0:
        name = f"leaky_relu_{slope!r}"
        if _same_function(values, activation_function(name, PROBE_GRID)):
            return name
    return None


def _closest_name(values: Optional[torch.Tensor]) -> str:
    """The named function nearest to ``values`` (max |difference| on the init range): the ``init``
    of a module that cannot record the function itself, for its ``reset_parameters()``."""
    if values is None:
        return "leaky_relu"  # the modules' default init
    inside = PROBE_GRID.abs() <= _INIT_RANGE
    return min(_named_values(), key=lambda n: float((_named_values()[n] - values)[inside].abs().max()))


_NOT_ALIASED = object()


def _alias(module: nn.Module) -> object:
    """ACTIVATION_ALIASES' entry for ``module``'s class or a base class, else _NOT_ALIASED."""
    for cls in type(module).__mro__:
        for key in (cls, f"{cls.__module__}.{cls.__qualname__}"):
            if key in ACTIVATION_ALIASES:
                return ACTIVATION_ALIASES[key]
    return _NOT_ALIASED


def _describe(module: nn.Module) -> str:
    extra = module.extra_repr()
    return f"{type(module).__name__}({extra})" if extra else type(module).__name__


class _Matcher:
    """Which modules are replaced and what function each computes, for one call: probes each module
    instance once."""

    def __init__(self, targets: Optional[Tuple[type, ...]], exclude: Tuple[str, ...]) -> None:
        self.targets = targets
        self.exclude = exclude
        self._values: Dict[int, Optional[torch.Tensor]] = {}

    def values(self, module: nn.Module) -> Optional[torch.Tensor]:
        if id(module) not in self._values:
            self._values[id(module)] = _probe(module)
        return self._values[id(module)]

    def excluded(self, qualified_name: str) -> bool:
        return any(fnmatch.fnmatchcase(qualified_name, pattern) for pattern in self.exclude)

    def is_target(self, module: nn.Module) -> bool:
        if isinstance(module, LEARNABLE_TYPES):
            return False
        if self.targets is not None:
            return isinstance(module, self.targets)
        if isinstance(module, DEFAULT_TARGETS) or _alias(module) is not _NOT_ALIASED:
            return True
        # Found by what it computes: a parameter-free leaf of another library (torch's own classes
        # are judged by class: Dropout and Softmax are not activations to replace).
        is_leaf = not module._modules and not module._parameters and not module._buffers
        if not is_leaf or type(module).__module__.startswith("torch."):
            return False
        values = self.values(module)
        return values is not None and function_name(values) is not None

    def name_of(self, module: nn.Module) -> Optional[str]:
        """The named function ``module`` computes (by class, alias or value), or None."""
        name = init_name(module)
        if name is not None:
            return name
        alias = _alias(module)
        if isinstance(alias, str):
            return alias
        values = self.values(module)
        return function_name(values) if values is not None else None

    def function_key(self, module: nn.Module) -> Hashable:
        """Equal for modules that compute the same function: their replacement is built (fitted) once."""
        name = self.name_of(module)
        if name is not None:
            return ("name", name)
        values = self.values(module)
        return ("values", values.numpy().tobytes()) if values is not None else ("module", id(module))


def _build_from_class(cls: Type[nn.Module], original: nn.Module, name: Optional[str],
                      values: Optional[torch.Tensor], kwargs: dict) -> nn.Module:
    if name is not None:
        if issubclass(cls, Rational):
            return cls(init=name, **kwargs)
    else:
        # No name for this function (e.g. ELU(alpha=0.5)): a module that takes a callable init (the
        # rational family and ERA fit it, PWLU keeps it) starts as the function itself.
        try:
            return cls(init=ModuleFunction(original), **kwargs)
        except TypeError:  # `init` must be a name here
            pass
    # Modules that take an init name only (user classes): the exact one, else the closest, said in
    # a warning.
    init = name if name is not None else _closest_name(values)
    try:
        act = cls(init=init, **kwargs)
    except TypeError:
        return cls(**kwargs)  # no `init` argument
    except (ValueError, RuntimeError) as e:  # a name this family has no init for
        warnings.warn(f"torch_rational.replace_activations: {cls.__name__} cannot be initialised to "
                      f"{init!r} ({e}); using its default init", stacklevel=4)
        return cls(**kwargs)
    if name is None:
        warnings.warn(f"torch_rational.replace_activations: {cls.__name__} has no init for {_describe(original)}; "
                      f"initialised to {init!r} instead", stacklevel=4)
    return act


Builder = Callable[[nn.Module, str], Optional[nn.Module]]


def _make_builder(factory: Factory, kwargs: dict, matcher: _Matcher) -> Tuple[Builder, str]:
    """(function (original, qualified name) -> replacement, description of the factory)."""
    if factory is None:
        factory = PAU
    if isinstance(factory, str):
        key = factory.lower()
        if key not in FAMILIES:
            raise ValueError(f"torch_rational.replace_activations: factory {factory!r} is not available; "
                             f"use one of {sorted(FAMILIES)}, a module class or a callable")
        factory = FAMILIES[key]
    if isinstance(factory, type):
        if not issubclass(factory, nn.Module):
            raise TypeError(f"torch_rational.replace_activations: factory must be an nn.Module class, a "
                            f"callable or a name, got the class {factory!r}")
        cls = factory
        built: Dict[Hashable, nn.Module] = {}  # one construction (and fit) per distinct function

        def build(original: nn.Module, qualified_name: str) -> nn.Module:
            key = matcher.function_key(original)
            if key not in built:
                built[key] = _build_from_class(cls, original, matcher.name_of(original), matcher.values(original),
                                               kwargs)
            return copy.deepcopy(built[key])

        return build, cls.__name__
    if callable(factory):
        if kwargs:
            raise TypeError("torch_rational.replace_activations: keyword arguments for the activation "
                            "class only apply when factory is a class or a name")
        user_factory = factory
        try:
            takes_name = "name" in inspect.signature(user_factory).parameters
        except (TypeError, ValueError):  # a builtin without a signature
            takes_name = False
        if takes_name:
            return (lambda original, qualified_name: user_factory(original, name=qualified_name)), \
                getattr(factory, "__name__", repr(factory))
        return (lambda original, qualified_name: user_factory(original)), getattr(factory, "__name__", repr(factory))
    raise TypeError(f"torch_rational.replace_activations: factory must be None, a name, an nn.Module "
                    f"class or a callable, got {factory!r}")


def _check_flag(function: str, name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"torch_rational.{function}: {name} must be True or False, got {type(value).__name__} "
                        f"({value!r:.80})")


def _tuple_of(argument: str, value: object, is_item: Callable[[object], bool], one: str, many: str) -> tuple:
    """``value``, one item or a sequence of items, as a tuple; a TypeError naming ``argument`` else."""
    try:
        items = (value,) if is_item(value) else tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"torch_rational.replace_activations: {argument} must be {one} or a sequence of {many}, "
                        f"got {value!r}") from None
    for item in items:
        if not is_item(item):
            raise TypeError(f"torch_rational.replace_activations: {argument} must hold {many}, got {item!r}")
    return items


def _check_targets(targets: object) -> Tuple[type, ...]:
    if isinstance(targets, str):  # a str is a sequence too, of one-character strings
        raise TypeError(f"torch_rational.replace_activations: targets must be a module type or a sequence "
                        f"of module types, got the string {targets!r}")
    return _tuple_of("targets", targets, lambda t: isinstance(t, type) and issubclass(t, nn.Module),
                     "a module type", "nn.Module types")


def _check_exclude(exclude: object) -> Tuple[str, ...]:
    return _tuple_of("exclude", exclude, lambda p: isinstance(p, str), "a name pattern", "name patterns (str)")


def _reference_tensor(model: nn.Module) -> Optional[torch.Tensor]:
    for t in model.parameters():
        if t.is_floating_point():
            return t
    for t in model.buffers():
        if t.is_floating_point():
            return t
    return None


def _finish(act: nn.Module, original: nn.Module, ref: Optional[torch.Tensor]) -> nn.Module:
    """Puts the new activation on the model's device / dtype and records its init for plots."""
    if ref is not None:
        act = act.to(device=ref.device, dtype=ref.dtype)
    remember_init(act, replaced=_describe(original))
    return act


def _matcher(targets, exclude) -> _Matcher:
    return _Matcher(None if targets is None else _check_targets(targets), _check_exclude(exclude))


def find_activations(model: nn.Module, targets: Targets = None, *,
                     exclude: Exclude = ()) -> List[Tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every module of ``model`` that ``replace_activations`` would
    replace with these ``targets`` and ``exclude`` (torch_rational modules themselves are never
    targets)."""
    check_model("find_activations", model)
    matcher = _matcher(targets, exclude)
    return [(n, m) for n, m in model.named_modules(remove_duplicate=False)
            if matcher.is_target(m) and not matcher.excluded(n)]


def replace_activations(model: nn.Module, factory: Factory = None, *, targets: Targets = None, exclude: Exclude = (),
                        inplace: bool = True, verbose: bool = True, **kwargs: Any) -> nn.Module:
    """Replaces the activation modules of ``model`` by learnable ones.

    Args:
        model: any ``nn.Module`` (it may itself be an activation; then the replacement is returned).
        factory: what to put in place of an activation:

            - ``None`` (default): a :class:`PAU` initialised to approximate the replaced function
              (``nn.LeakyReLU(0.2)`` becomes a PAU fitted to LeakyReLU(0.2); functions without a
              name, e.g. ``nn.ELU(alpha=0.5)``, have the module itself fitted on [-3, 3]);
            - a name: ``"pau"``, ``"rpau"``, ``"opau"``, ``"hp1"``, ``"hp2"``, ``"rational"``,
              ``"era"``, ``"pwlu"`` (:data:`torch_rational.families.FAMILIES`), initialised the same way;
            - an ``nn.Module`` class, constructed as ``cls(init=<name of the replaced function>,
              **kwargs)`` (without ``init`` when the class has no such argument);
            - a callable taking the replaced module and returning its replacement (``None`` keeps it);
              one with a parameter ``name`` also receives the module's qualified name
              (``factory(module, name="blocks.0.se.gate")``).

            With a class or a name, every distinct function is built (and fitted) once per call and
            copied to every place that computes it.
        targets: module types to replace; subclasses match too. Default (``None``): the types in
            :data:`DEFAULT_TARGETS`, the classes in :data:`ACTIVATION_ALIASES` (timm's ``GELU``,
            ``Swish``, ``HardSigmoid``, ...), and any parameter-free leaf module of another library
            that computes a named function on :data:`PROBE_GRID` (checked by evaluating it).
        exclude: qualified module names to leave alone, as ``fnmatch`` patterns (``"*.se.*"`` keeps
            squeeze-and-excitation gates).
        inplace: modify ``model`` itself (default) or a deep copy of it.
        verbose: print how many activations were replaced, by type.
        **kwargs: passed to the activation class, e.g. ``degrees=(3, 2)`` or ``version="B"``.

    The new module's ``init`` is the named function the replaced module computes (found by class,
    alias or value), so ``reset_parameters()`` returns to it. For a function without a name the
    module itself is the init where the class takes a callable ``init``; otherwise the replacement
    is fitted to the module and ``init`` names the closest named function.

    A module instance used at several places (e.g. torchvision's ResNet blocks apply one ``self.relu``
    twice) is replaced by one new instance, so the places keep sharing it, coefficients included.
    New activations are put on the device and dtype of the model's first floating parameter.

    The replacement approximates the replaced function on [-3, 3] (the range of the init fits), so
    the model's eval-mode output changes at once where activations see inputs outside it (a
    PAU fitted to ReLU6 on [-3, 3] does not clip at 6). To see where the inputs lie, use
    :func:`torch_rational.record_inputs`; to keep the change small, wider fit ranges or higher
    degrees help.

    Only modules can be found this way: ``F.relu(x)`` or ``x.sigmoid()`` inside ``forward`` stay as
    they are; use :func:`replace_functional_activations` for those (traceable models only).

    Returns:
        the model (a copy when ``inplace=False``) with the activations replaced.
    """
    check_model("replace_activations", model)
    _check_flag("replace_activations", "inplace", inplace)
    _check_flag("replace_activations", "verbose", verbose)
    matcher = _matcher(targets, exclude)
    build, factory_name = _make_builder(factory, kwargs, matcher)
    if not inplace:
        model = copy.deepcopy(model)
    ref = _reference_tensor(model)
    replaced: Dict[int, nn.Module] = {}  # id(original) -> replacement, to keep shared modules shared
    counts: Counter = Counter()

    def replacement(original: nn.Module, qualified_name: str) -> Optional[nn.Module]:
        key = id(original)
        if key not in replaced:
            act = build(original, qualified_name)
            if act is not None and not isinstance(act, nn.Module):
                raise TypeError(f"torch_rational.replace_activations: factory returned {type(act).__name__}, "
                                f"expected an nn.Module or None")
            replaced[key] = _finish(act, original, ref) if act is not None else None
        return replaced[key]

    def is_target(m: nn.Module, qualified_name: str) -> bool:
        return matcher.is_target(m) and not matcher.excluded(qualified_name)

    if is_target(model, ""):
        new = replacement(model, "")
        if new is not None:
            counts[_describe(model)] += 1
            model = new
    else:
        visited = set()
        stack = [("", model)]
        while stack:
            prefix, parent = stack.pop()
            if id(parent) in visited:
                continue
            visited.add(id(parent))
            for name, child in list(parent._modules.items()):
                if child is None:
                    continue
                qualified_name = f"{prefix}.{name}" if prefix else name
                if is_target(child, qualified_name):
                    new = replacement(child, qualified_name)
                    if new is not None:
                        parent._modules[name] = new  # also right for Sequential / ModuleList / ModuleDict keys
                        counts[_describe(child)] += 1
                elif not isinstance(child, LEARNABLE_TYPES):
                    stack.append((qualified_name, child))

    total = sum(counts.values())
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    message = f"torch_rational.replace_activations: replaced {total} activation module(s) with {factory_name}"
    message += f" ({summary})" if total else ""
    _log.info(message)
    if verbose:
        print(message)
    if total == 0:
        warnings.warn("torch_rational.replace_activations: no activation module was replaced. Functional "
                      "calls such as F.relu(x) in forward() are not modules; see "
                      "torch_rational.replace_functional_activations", stacklevel=2)
    return model


# ------------------------------------------------------------------------------------------------
# torch.fx rewrite of functional activations

# function -> module class whose constructor takes the function's non-input arguments in the same order.
_FUNCTION_TO_MODULE: Dict[Callable, Type[nn.Module]] = {
    F.relu: nn.ReLU,
    torch.relu: nn.ReLU,
    F.relu6: nn.ReLU6,
    F.leaky_relu: nn.LeakyReLU,
    F.elu: nn.ELU,
    F.celu: nn.CELU,
    F.selu: nn.SELU,
    torch.selu: nn.SELU,
    F.gelu: nn.GELU,
    F.silu: nn.SiLU,
    F.mish: nn.Mish,
    F.hardswish: nn.Hardswish,
    F.hardtanh: nn.Hardtanh,
    F.softplus: nn.Softplus,
    torch.tanh: nn.Tanh,
    F.tanh: nn.Tanh,
    torch.sigmoid: nn.Sigmoid,
    F.sigmoid: nn.Sigmoid,
}
# Tensor methods -> module class (no extra arguments).
_METHOD_TO_MODULE: Dict[str, Type[nn.Module]] = {
    "relu": nn.ReLU, "relu_": nn.ReLU, "tanh": nn.Tanh, "tanh_": nn.Tanh, "sigmoid": nn.Sigmoid,
    "sigmoid_": nn.Sigmoid,
}


def _module_for_node(node: "torch.fx.Node") -> Optional[nn.Module]:
    """The activation module equivalent to a functional call node, or None when the node is not a
    known activation or has non-constant arguments."""
    if node.op == "call_function" and node.target in _FUNCTION_TO_MODULE:
        cls = _FUNCTION_TO_MODULE[node.target]
    elif node.op == "call_method" and node.target in _METHOD_TO_MODULE:
        cls = _METHOD_TO_MODULE[node.target]
    else:
        return None
    args = list(node.args[1:])
    kwargs = {k: v for k, v in node.kwargs.items() if k not in ("input", "inplace")}
    if node.op == "call_function" and cls in (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU,
                                              nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardtanh):
        # The functions' trailing `inplace` positional argument maps to the module's; drop it.
        n_before_inplace = {nn.LeakyReLU: 1, nn.ELU: 1, nn.CELU: 1, nn.Hardtanh: 2}.get(cls, 0)
        args = args[:n_before_inplace]
    if any(isinstance(a, torch.fx.Node) for a in list(args) + list(kwargs.values())):
        return None
    try:
        return cls(*args, **kwargs)
    except TypeError:
        return None


def _mutates_a_shared_input(node: "torch.fx.Node") -> bool:
    """An in-place call (``x.relu_()``, ``F.relu(x, inplace=True)``) whose input has other users."""
    if node.op == "call_method":
        inplace = str(node.target).endswith("_")
    else:
        inplace = bool(node.kwargs.get("inplace", False))
        if not inplace and node.target in (F.relu, F.relu6, F.selu, F.silu, F.mish, F.hardswish):
            inplace = len(node.args) > 1 and node.args[1] is True
        elif not inplace and node.target in (F.leaky_relu, F.elu, F.celu):
            inplace = len(node.args) > 2 and node.args[2] is True
        elif not inplace and node.target is F.hardtanh:
            inplace = len(node.args) > 3 and node.args[3] is True
    source = node.args[0] if node.args else node.kwargs.get("input")
    return inplace and isinstance(source, torch.fx.Node) and len(source.users) > 1


def replace_functional_activations(model: nn.Module, factory: Factory = None, *, targets: Targets = None,
                                   exclude: Exclude = (), verbose: bool = True,
                                   **kwargs: Any) -> "torch.fx.GraphModule":
    """Traces ``model`` with ``torch.fx.symbolic_trace`` and replaces functional activations
    (``F.relu(x)``, ``F.leaky_relu(x, 0.2)``, ``torch.tanh(x)``, ``x.sigmoid()``, ...) as well as
    activation modules by learnable ones, like :func:`replace_activations` (same ``factory``,
    ``targets``, ``exclude`` and ``kwargs``; with ``targets=None`` the functional calls of
    :data:`DEFAULT_TARGETS` are replaced). Every functional call site gets its own activation module.

    Returns a new ``torch.fx.GraphModule``; ``model`` is not modified. Models with data-dependent
    Python control flow cannot be traced (``torch.fx`` raises); rewrite those by hand with modules.
    """
    import torch.fx

    _check_flag("replace_functional_activations", "verbose", verbose)
    matcher = _matcher(targets, exclude)
    _make_builder(factory, kwargs, matcher)  # validate the arguments before tracing
    call_targets = DEFAULT_TARGETS if matcher.targets is None else matcher.targets
    gm = torch.fx.symbolic_trace(copy.deepcopy(model))
    found = []
    for node in gm.graph.nodes:
        module = _module_for_node(node)
        if module is None or not isinstance(module, call_targets):
            continue
        if _mutates_a_shared_input(node):
            # `x.relu_(); y = x + 1` relies on the mutation; a module returns a new tensor instead.
            warnings.warn(f"torch_rational.replace_functional_activations: left the in-place {node.target} "
                          f"({node.name}) alone: its input is used again after the in-place change",
                          stacklevel=2)
            continue
        found.append((node, module))
    for i, (node, module) in enumerate(found):
        name = f"rational_activation_{i}"
        while hasattr(gm, name):
            name += "_"
        gm.add_submodule(name, module)
        with gm.graph.inserting_before(node):
            new = gm.graph.call_module(name, (node.args[0] if node.args else node.kwargs["input"],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    # The functional sites are modules now: one module pass replaces them and the original modules.
    return replace_activations(gm, factory, targets=targets, exclude=exclude, inplace=True, verbose=verbose,
                               **kwargs)


# ------------------------------------------------------------------------------------------------
# Optimizer parameter groups


def param_groups(model: nn.Module, **activation_options: Any) -> List[dict]:
    """Two optimizer parameter groups: every other parameter, then the activation parameters with
    ``activation_options`` (e.g. ``lr=...``, ``weight_decay=0.0``), as the PAU / ERA papers train the
    coefficients with their own learning rate and without weight decay::

        opt = torch.optim.AdamW(torch_rational.param_groups(model, weight_decay=0.0), lr=1e-3, weight_decay=1e-2)

    An empty group is left out (PyTorch optimizers reject empty groups)."""
    check_model("param_groups", model)
    acts = activation_parameters(model)
    ids = {id(p) for p in acts}
    others = [p for p in model.parameters() if id(p) not in ids]
    groups = []
    if others:
        groups.append({"params": others})
    if acts:
        groups.append({"params": acts, **activation_options})
    return groups

