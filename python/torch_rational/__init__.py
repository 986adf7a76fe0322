"""torch_rational: learnable rational activation functions (PAU, RPAU, orthogonal-Padé, HP-1/2) as
PyTorch custom ops with fused CPU (and CUDA) kernels."""

from . import _ops  # noqa: F401  (loads the library, registers fake kernels)
from . import functional
from .fit import FitResult, activation_function, fit, init_coefficients
from .modules import HP1, HP2, OPAU, PAU, RPAU, Rational

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
]
