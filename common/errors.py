"""The root of Solstice CI's error hierarchy.

    SolsticeError                 anything Solstice reports to a user
    ├── ConfigError               a setting is missing, unknown or malformed
    ├── DurationError             a duration such as "90s" could not be read
    ├── ServiceUnavailable        a service the work needs (state store, broker) cannot be
    │                             reached right now: the same work should succeed later
    └── (each part adds its own subclasses next to the code that raises them)

A part's "cannot reach" error (``StoreUnavailable``, ``QueueUnavailable``,
``PublishFailed``) is also a ``ServiceUnavailable``, so code that retries work
(the queue's handlers) can tell an outage, which is nobody's fault and worth
waiting out, from a failure of the work itself, which is counted.

Every error carries a message written for the person who has to act on it;
CLIs print it as one ``ERROR: ...`` line instead of a traceback.
"""

from __future__ import annotations


class SolsticeError(Exception):
    """Base class: ``str(err)`` is a complete, user-facing sentence."""


class ConfigError(SolsticeError):
    """A configuration value is missing, unknown, or of the wrong type."""


class ServiceUnavailable(SolsticeError):
    """A service the work depends on cannot be reached now; retry the same work later."""


class DurationError(SolsticeError, ValueError):
    """A duration string is not of the form ``90s``, ``30m``, ``2h``, ``1h30m``."""
