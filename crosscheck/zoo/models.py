"""Importing this module registers every zoo model."""

from . import classic, dense, densenet, inception, keras, mobile, resnet, transformer  # noqa: F401
