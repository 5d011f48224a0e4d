"""Contract tests of the state store, run against SQLite and PostgreSQL."""
