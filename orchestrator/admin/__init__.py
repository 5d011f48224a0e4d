"""AdminService: Submit, Get, List, Cancel, Retry, TailLogs, Hosts, Drain (see servicer.py)."""

from orchestrator.admin.servicer import AdminServicer, admin_servicer_factory, host_info

__all__ = ["AdminServicer", "admin_servicer_factory", "host_info"]
