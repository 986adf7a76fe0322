"""torch_rational: learnable rational activation functions (PAU, RPAU, orthogonal-Padé, HP-1/2) as
PyTorch custom ops with fused CPU (and CUDA) kernels."""

from . import _ops  # noqa: F401  (loads the library, registers fake kernels)
from . import functional
from .fit import FitResult, activation_function, fit, init_coefficients
from .modules import HP1, HP2, OPAU, PAU, RPAU, Rational
from .pwlu import PWLU
from .rewrite import (
    activation_modules,
    activation_parameters,
    find_activations,
    param_groups,
    replace_activations,
    replace_functional_activations,
)
from .plot import plot, record_inputs, remember_init  # the function `plot` takes the submodule's name

__version__ = "0.1.0"

__all__ = [
    "functional",
    "fit",
    "FitResult",
    "init_coefficients",
    "activation_function",
    "Rational",
    "PAU",
    "RPAU",
    "OPAU",
    "HP1",
    "HP2",
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
]

from .era import ERA, EraFitResult, era_init_parameters, fit_era  # noqa: E402

__all__ += ["ERA", "EraFitResult", "fit_era", "era_init_parameters"]
