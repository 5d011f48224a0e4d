"""The root of Solstice CI's error hierarchy.

    SolsticeError                 anything Solstice reports to a user
    ├── ConfigError               a setting is missing, unknown or malformed
    ├── DurationError             a duration such as "90s" could not be read
    └── (each part adds its own subclasses next to the code that raises them)

Every error carries a message written for the person who has to act on it;
CLIs print it as one ``ERROR: ...`` line instead of a traceback.
"""

from __future__ import annotations


class SolsticeError(Exception):
    """Base class: ``str(err)`` is a complete, user-facing sentence."""


class ConfigError(SolsticeError):
    """A configuration value is missing, unknown, or of the wrong type."""


class DurationError(SolsticeError, ValueError):
    """A duration string is not of the form ``90s``, ``30m``, ``2h``, ``1h30m``."""
