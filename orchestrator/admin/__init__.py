"""AdminService: Submit, Get, List, Cancel, Retry, TailLogs, Hosts, Drain, operator tokens and secrets.

    servicer     the RPCs (token calls in token_rpcs, secret calls in secrets)
    admission    what Submit makes of a caller's job (source, trust, clone credentials)
    auth         AdminAuth: every call authenticated and checked against its role
    listeners    AdminServer: the Unix socket and the optional TLS listener, never the runners' address
    relay        the public socket, relaying by the peer's uid (peercred)
    settings     AdminConfig (the ``admin`` section)
"""

from orchestrator.admin.servicer import AdminServicer, admin_servicer_factory, host_info

__all__ = ["AdminServicer", "admin_servicer_factory", "host_info"]
