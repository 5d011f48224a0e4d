"""Moved to ``tests.proxy`` (the store tests cut connections too); kept for branches that import it here."""

from tests.proxy import TcpProxy, proxy_to

__all__ = ["TcpProxy", "proxy_to"]
