"""The rule table. Importing this package registers every built-in rule."""

from . import layout, mixing, pointwise, window  # noqa: F401  (registration side effects)
from .registry import Call, find_rule, rule

__all__ = ["Call", "find_rule", "rule"]
