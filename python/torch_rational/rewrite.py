"""One-call model rewrite: swap the fixed activations of a model for learnable ones.

``replace_activations`` walks the module tree and replaces activation *modules* (``nn.ReLU``, ...).
Functional calls inside ``forward`` (``F.relu(x)``, ``torch.tanh(x)``, ``x.sigmoid()``) are not
modules and cannot be found that way; ``replace_functional_activations`` handles them for models
that ``torch.fx.symbolic_trace`` can trace.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections import Counter
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Type, Union

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
from .fit import fit
from .modules import PAU, Rational

__all__ = [
    "DEFAULT_TARGETS",
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

Factory = Union[None, str, Type[nn.Module], Callable[[nn.Module], Optional[nn.Module]]]


def _family_name(module: nn.Module) -> str:
    """The named function closest to ``module`` (``init`` of a module fitted to an unnamed variant,
    used by its ``reset_parameters()``)."""
    for cls, name in ((nn.ELU, "elu"), (nn.CELU, "celu"), (nn.GELU, "gelu"), (nn.Hardtanh, "hardtanh"),
                      (nn.Softplus, "softplus")):
        if isinstance(module, cls):
            return name
    return "leaky_relu"


def _describe(module: nn.Module) -> str:
    extra = module.extra_repr()
    return f"{type(module).__name__}({extra})" if extra else type(module).__name__


def _target_function(original: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``original`` as a float64 function for the fitter (a private copy: the model's own module
    may live on another device or dtype, and must not be touched)."""
    ref = copy.deepcopy(original).to(device="cpu", dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return ref(x.clone())  # clone: inplace=True activations would overwrite the fitter's grid

    return f


def _build_from_class(cls: Type[nn.Module], original: nn.Module, kwargs: dict) -> nn.Module:
    name = init_name(original)
    if issubclass(cls, Rational):
        if name is not None:
            return cls(init=name, **kwargs)
        # No name for this function (e.g. ELU(alpha=0.5)): fit the module itself on [-3, 3], the
        # range of the shipped inits. `init` keeps the closest name for reset_parameters().
        act = cls(**kwargs)
        a, b, _ = fit(_target_function(original), act.degrees, version=act.version, basis=act.basis)
        with torch.no_grad():
            act.numerator.copy_(a.expand_as(act.numerator))
            act.denominator.copy_(b.expand_as(act.denominator))
        act.init = _family_name(original)  # set after construction: its own init may not be shipped
        return act
    # Other families (ERA, PWLU, user classes) take an init name only: the exact one, else the
    # closest (ELU(alpha=0.5) starts as ELU), said in a warning.
    init = name if name is not None else _family_name(original)
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


def _make_builder(factory: Factory, kwargs: dict) -> Tuple[Callable[[nn.Module], Optional[nn.Module]], str]:
    """(function original -> replacement, description of the factory)."""
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
        return (lambda original: _build_from_class(cls, original, kwargs)), cls.__name__
    if callable(factory):
        if kwargs:
            raise TypeError("torch_rational.replace_activations: keyword arguments for the activation "
                            "class only apply when factory is a class or a name")
        return factory, getattr(factory, "__name__", repr(factory))
    raise TypeError(f"torch_rational.replace_activations: factory must be None, a name, an nn.Module "
                    f"class or a callable, got {factory!r}")


def _check_flag(function: str, name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"torch_rational.{function}: {name} must be True or False, got {type(value).__name__} "
                        f"({value!r:.80})")


def _check_targets(targets) -> Tuple[type, ...]:
    if isinstance(targets, str):  # a str is a sequence too, of one-character strings
        raise TypeError(f"torch_rational.replace_activations: targets must be a module type or a sequence "
                        f"of module types, got the string {targets!r}")
    if isinstance(targets, type):
        targets = (targets,)
    try:
        targets = tuple(targets)
    except TypeError:
        raise TypeError(f"torch_rational.replace_activations: targets must be a module type or a sequence "
                        f"of module types, got {targets!r}") from None
    for t in targets:
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise TypeError(f"torch_rational.replace_activations: targets must hold nn.Module types, got {t!r}")
    return targets


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


def find_activations(model: nn.Module, targets: Sequence[Type[nn.Module]] = DEFAULT_TARGETS
                     ) -> List[Tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every module of ``model`` that ``replace_activations`` would
    replace with these ``targets`` (torch_rational modules themselves are never targets)."""
    check_model("find_activations", model)
    targets = _check_targets(targets)
    return [(n, m) for n, m in model.named_modules(remove_duplicate=False)
            if isinstance(m, targets) and not isinstance(m, LEARNABLE_TYPES)]


def replace_activations(
    model: nn.Module,
    factory: Factory = None,
    *,
    targets: Sequence[Type[nn.Module]] = DEFAULT_TARGETS,
    inplace: bool = True,
    verbose: bool = True,
    **kwargs,
) -> nn.Module:
    """Replaces every activation module of ``model`` whose type is in ``targets`` by a learnable one.

    Args:
        model: any ``nn.Module`` (it may itself be an activation; then the replacement is returned).
        factory: what to put in place of an activation:

            - ``None`` (default): a :class:`PAU` initialised to approximate the replaced function
              (``nn.LeakyReLU(0.2)`` becomes a PAU fitted to LeakyReLU(0.2); functions without a
              name, e.g. ``nn.ELU(alpha=0.5)``, have the module itself fitted on [-3, 3], and
              ``init`` then names the closest function, the one ``reset_parameters()`` returns to);
            - a name: ``"pau"``, ``"rpau"``, ``"opau"``, ``"hp1"``, ``"hp2"``, ``"rational"``,
              ``"era"``, ``"pwlu"`` (:data:`torch_rational.families.FAMILIES`), initialised the same way;
            - an ``nn.Module`` class, constructed as ``cls(init=<name of the replaced function>,
              **kwargs)`` (without ``init`` when the class has no such argument);
            - a callable taking the replaced module and returning its replacement (``None`` keeps it).
        targets: module types to replace (default :data:`DEFAULT_TARGETS`); subclasses match too.
        inplace: modify ``model`` itself (default) or a deep copy of it.
        verbose: print how many activations were replaced, by type.
        **kwargs: passed to the activation class, e.g. ``degrees=(3, 2)`` or ``version="B"``.

    A module instance used at several places (e.g. torchvision's ResNet blocks apply one ``self.relu``
    twice) is replaced by one new instance, so the places keep sharing it, coefficients included.
    New activations are put on the device and dtype of the model's first floating parameter.

    Only modules can be found this way: ``F.relu(x)`` or ``x.sigmoid()`` inside ``forward`` stay as
    they are; use :func:`replace_functional_activations` for those (traceable models only).

    Returns:
        the model (a copy when ``inplace=False``) with the activations replaced.
    """
    check_model("replace_activations", model)
    _check_flag("replace_activations", "inplace", inplace)
    _check_flag("replace_activations", "verbose", verbose)
    targets = _check_targets(targets)
    build, factory_name = _make_builder(factory, kwargs)
    if not inplace:
        model = copy.deepcopy(model)
    ref = _reference_tensor(model)
    replaced: Dict[int, nn.Module] = {}  # id(original) -> replacement, to keep shared modules shared
    counts: Counter = Counter()

    def replacement(original: nn.Module) -> Optional[nn.Module]:
        key = id(original)
        if key not in replaced:
            act = build(original)
            if act is not None and not isinstance(act, nn.Module):
                raise TypeError(f"torch_rational.replace_activations: factory returned {type(act).__name__}, "
                                f"expected an nn.Module or None")
            replaced[key] = _finish(act, original, ref) if act is not None else None
        return replaced[key]

    def is_target(m: nn.Module) -> bool:
        return isinstance(m, targets) and not isinstance(m, LEARNABLE_TYPES)

    if is_target(model):
        new = replacement(model)
        if new is not None:
            counts[_describe(model)] += 1
            model = new
    else:
        visited = set()
        stack = [model]
        while stack:
            parent = stack.pop()
            if id(parent) in visited:
                continue
            visited.add(id(parent))
            for name, child in list(parent._modules.items()):
                if child is None:
                    continue
                if is_target(child):
                    new = replacement(child)
                    if new is not None:
                        parent._modules[name] = new  # also right for Sequential / ModuleList / ModuleDict keys
                        counts[_describe(child)] += 1
                elif not isinstance(child, LEARNABLE_TYPES):
                    stack.append(child)

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


def replace_functional_activations(
    model: nn.Module,
    factory: Factory = None,
    *,
    targets: Sequence[Type[nn.Module]] = DEFAULT_TARGETS,
    verbose: bool = True,
    **kwargs,
) -> "torch.fx.GraphModule":
    """Traces ``model`` with ``torch.fx.symbolic_trace`` and replaces functional activations
    (``F.relu(x)``, ``F.leaky_relu(x, 0.2)``, ``torch.tanh(x)``, ``x.sigmoid()``, ...) as well as
    activation modules by learnable ones, like :func:`replace_activations` (same ``factory``,
    ``targets`` and ``kwargs``). Every functional call site gets its own activation module.

    Returns a new ``torch.fx.GraphModule``; ``model`` is not modified. Models with data-dependent
    Python control flow cannot be traced (``torch.fx`` raises); rewrite those by hand with modules.
    """
    import torch.fx

    _check_flag("replace_functional_activations", "verbose", verbose)
    targets = _check_targets(targets)
    _make_builder(factory, kwargs)  # validate the factory before tracing
    gm = torch.fx.symbolic_trace(copy.deepcopy(model))
    found = []
    for node in gm.graph.nodes:
        module = _module_for_node(node)
        if module is None or not isinstance(module, targets):
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
    return replace_activations(gm, factory, targets=targets, inplace=True, verbose=verbose, **kwargs)


# ------------------------------------------------------------------------------------------------
# Optimizer parameter groups


def param_groups(model: nn.Module, **activation_options) -> List[dict]:
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

