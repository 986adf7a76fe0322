"""Compatibility: the PWLU module moved to :mod:`torch_rational.modules` (with every other
activation module). Kept so ``from torch_rational.pwlu import PWLU`` and the package's current
imports still work."""

from .modules import PWLU  # noqa: F401

__all__ = ["PWLU"]
