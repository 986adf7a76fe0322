"""Compatibility: ERA's module moved to :mod:`torch_rational.modules` and its fitter to
:mod:`torch_rational.fit` (modules and fitters laid out like the rational family's). Kept so
``from torch_rational.era import ...`` and the package's current imports still work."""

from .fit import EraFitResult, era_init_parameters, fit_era  # noqa: F401
from .modules import ERA, ERA_NORMALIZATIONS  # noqa: F401

__all__ = ["ERA", "ERA_NORMALIZATIONS", "EraFitResult", "era_init_parameters", "fit_era"]
