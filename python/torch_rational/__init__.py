"""torch_rational: learnable rational activation functions (PAU, RPAU, orthogonal-Padé, HP-1/2, ERA)
and the piecewise linear unit (PWLU) as PyTorch custom ops with fused CPU (and CUDA) kernels."""

from . import _ops  # noqa: F401  (checks the torch version, loads the library, registers fake kernels)
from . import families, functional, monitor
from ._version import __version__
from .families import activation_modules, activation_parameters, remember_init
from .fit import EraFitResult, FitResult, activation_function, era_init_parameters, fit, fit_era, fit_init, init_coefficients
from .modules import ERA, HP1, HP2, OPAU, PAU, PWLU, RPAU, Rational
from .monitor import BestFit, Snapshots, TensorBoardHook, best_fit
from .plot import plot, record_inputs  # the function `plot` takes the submodule's name
from .rewrite import (
    param_groups,
    find_activations,
    replace_activations,
    replace_functional_activations,
)

__all__ = [
    "__version__",
    "families",
    "functional",
    "fit",
    "FitResult",
    "init_coefficients",
    "fit_init",
    "activation_function",
    "Rational",
    "PAU",
    "RPAU",
    "OPAU",
    "HP1",
    "HP2",
    "ERA",
    "EraFitResult",
    "fit_era",
    "era_init_parameters",
    "PWLU",
    "replace_activations",
    "replace_functional_activations",
    "find_activations",
    "activation_modules",
    "activation_parameters",
    "param_groups",
    "plot",
    "record_inputs",
    "remember_init",
    "monitor",
    "Snapshots",
    "TensorBoardHook",
    "BestFit",
    "best_fit",
]
