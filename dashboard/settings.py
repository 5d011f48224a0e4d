"""The dashboard's settings: section ``dashboard`` of ``solstice serve`` and of ``solstice-integration``.

    dashboard:
      require_signin: false     # true: every page needs an operator token (read role or more)
      secure_cookie: auto       # auto (when the request came over https) | always | never
      window_days: 7            # the summary page's default window
      store_url: ""             # solstice-integration only: the orchestrators' state store
                                # (postgresql://...); "" = no dashboard there

Variables: ``SOLSTICE_DASHBOARD_REQUIRE_SIGNIN``, ``SOLSTICE_DASHBOARD_SECURE_COOKIE``, ...
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import ConfigError

WINDOWS = (1, 7, 14, 30)  # the summary page's window choices, in days
COOKIE_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class DashboardSettings:
    """How the dashboard's pages are served."""

    require_signin: bool = False
    secure_cookie: str = "auto"
    window_days: int = 7
    store_url: str = ""

    def __post_init__(self) -> None:
        if self.secure_cookie not in COOKIE_MODES:
            raise ConfigError(f"dashboard.secure_cookie must be one of {', '.join(COOKIE_MODES)}, "
                              f"not {self.secure_cookie!r}")
        if self.window_days not in WINDOWS:
            raise ConfigError(f"dashboard.window_days must be one of {', '.join(map(str, WINDOWS))}, "
                              f"not {self.window_days}")
