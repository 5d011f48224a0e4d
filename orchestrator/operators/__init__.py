"""Who may operate Solstice: roles, principals and operator tokens.

    roles    Role (read < operate < admin), Principal, LOCAL_ADMIN
    tokens   OperatorTokens: create / list / revoke / verify(token) -> Principal
    cli      the ``token`` command group of ``solstice`` and ``solstice-orchestrator``
"""

from orchestrator.operators.roles import LOCAL_ADMIN, ROLE_NAMES, Principal, Role
from orchestrator.operators.tokens import OperatorTokenError, OperatorTokens, TokenRefused

__all__ = ["LOCAL_ADMIN", "ROLE_NAMES", "OperatorTokenError", "OperatorTokens", "Principal", "Role", "TokenRefused"]
