"""Tiny model factories that the CLI tests load as ``file.py:factory`` or ``package.module:factory``."""
