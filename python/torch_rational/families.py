"""The one registry of the learnable activation families: which module classes exist, by what name
a factory string selects them, which modules are torch_rational activations, and the named function
(init) a fixed activation computes. ``rewrite``, ``plot`` and the package's ``__init__`` read it;
adding a family means adding its class here (and its ops, see docs/DESIGN.md).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple, Type

import torch
from torch import nn

from .modules import ERA, HP1, HP2, OPAU, PAU, PWLU, RPAU, Rational

__all__ = [
    "FAMILIES",
    "LEARNABLE_TYPES",
    "family_of",
    "init_name",
    "activation_modules",
    "activation_parameters",
    "remember_init",
    "INIT_ATTR",
]

#: Factory names (as ``replace_activations(model, "hp2")`` takes them) -> module classes.
FAMILIES: Dict[str, Type[nn.Module]] = {
    "pau": PAU,
    "rpau": RPAU,
    "opau": OPAU,
    "hp1": HP1,
    "hp2": HP2,
    "rational": Rational,
    "era": ERA,
    "pwlu": PWLU,
}

#: Every torch_rational activation module is an instance of one of these.
LEARNABLE_TYPES: Tuple[Type[nn.Module], ...] = tuple(FAMILIES.values())

#: Attribute holding what :func:`remember_init` stored. A plain attribute, not a buffer: it never
#: enters the state_dict, so checkpoints stay loadable by code that does not know about it, while
#: copy.deepcopy and pickle carry it along.
INIT_ATTR = "_torch_rational_init"


def family_of(module: nn.Module) -> Optional[str]:
    """The factory name of ``module``'s family (``"hp2"`` for an ``HP2``; a subclass of ``PAU``
    written by a user is ``"pau"``), or ``None`` when it is not a torch_rational activation."""
    for cls in type(module).__mro__:
        for name, family in FAMILIES.items():
            if cls is family:
                return name
    return None


def init_name(module: nn.Module) -> Optional[str]:
    """The name of the function (as known to :func:`torch_rational.activation_function`) that the
    torch activation ``module`` computes, or ``None`` when there is no exact name (e.g.
    ``nn.ELU(alpha=0.5)``) or ``module`` is not one of torch's activations. Modules of other
    libraries are recognised by what they compute, see :func:`torch_rational.rewrite.function_name`."""
    if isinstance(module, nn.ReLU):
        return "relu"
    if isinstance(module, nn.ReLU6):
        return "relu6"
    if isinstance(module, nn.LeakyReLU):
        slope = float(module.negative_slope)
        return "leaky_relu" if slope == 0.01 else f"leaky_relu_{slope!r}"
    if isinstance(module, nn.ELU):
        return "elu" if float(module.alpha) == 1.0 else None
    if isinstance(module, nn.CELU):
        return "celu" if float(module.alpha) == 1.0 else None
    if isinstance(module, nn.SELU):
        return "selu"
    if isinstance(module, nn.GELU):
        return "gelu" if module.approximate == "none" else None
    if isinstance(module, nn.SiLU):
        return "swish"
    if isinstance(module, nn.Mish):
        return "mish"
    if isinstance(module, nn.Tanh):
        return "tanh"
    if isinstance(module, nn.Sigmoid):
        return "sigmoid"
    if isinstance(module, nn.Hardswish):
        return "hardswish"
    if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
        return "hardtanh" if (module.min_val, module.max_val) == (-1.0, 1.0) else None
    if isinstance(module, nn.Softplus):
        return "softplus" if (module.beta, module.threshold) == (1.0, 20.0) else None
    if isinstance(module, nn.Identity):
        return "identity"
    return None


def check_model(function: str, model: object) -> None:
    """TypeError naming ``function`` when ``model`` is not an ``nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"torch_rational.{function}: model must be an nn.Module, got {type(model).__name__} "
                        f"({model!r:.80})")


def activation_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every torch_rational activation in ``model`` (each instance once)."""
    check_model("activation_modules", model)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LEARNABLE_TYPES)]


def activation_parameters(model: nn.Module) -> List[nn.Parameter]:
    """The parameters of the torch_rational activations in ``model`` (coefficients, heights, ...),
    each once, in module order."""
    seen, params = set(), []
    for _, m in activation_modules(model):
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def activations_in(target: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``target`` itself (named ``""``) when it is a torch_rational activation, else its activations."""
    if isinstance(target, LEARNABLE_TYPES):
        return [("", target)]
    return activation_modules(target)


def remember_init(target: nn.Module, *, replaced: Optional[str] = None) -> nn.Module:
    """Stores a copy of the current parameters and buffers of every torch_rational activation in
    ``target`` (a model or one activation) as its "init" for :func:`torch_rational.plot`.
    ``replace_activations`` does this for the modules it creates; call it yourself before training for
    modules you built. ``replaced`` is a label for the function the module replaced (shown in the
    plot title)."""
    for _, m in activations_in(target):
        state: Dict[str, torch.Tensor] = {k: v.detach().to("cpu", copy=True) for k, v in m.state_dict().items()}
        setattr(m, INIT_ATTR, {"state": state, "replaced": replaced})
    return target
