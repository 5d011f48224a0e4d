"""AdminService: Submit, Get, List, Cancel, Retry, TailLogs, Hosts, Drain (see servicer.py), and the
secret calls SetSecret, ListSecrets, DeleteSecret, SecretAudit (secrets.py, with their roles)."""

from orchestrator.admin.secrets import SECRET_RPC_ROLES
from orchestrator.admin.servicer import AdminServicer, admin_servicer_factory, host_info

__all__ = ["SECRET_RPC_ROLES", "AdminServicer", "admin_servicer_factory", "host_info"]
