"""Plain-SQL schema migrations of the state store (data files; applied by orchestrator/store/migrate.py)."""
