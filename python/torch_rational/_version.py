"""The package version: setup.py reads it from this file, the package imports it."""

__version__ = "0.1.0"
