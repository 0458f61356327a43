"""Importing this module registers every zoo model."""

from . import classic, keras  # noqa: F401
