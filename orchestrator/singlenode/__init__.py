"""Single-node mode: integration + orchestrator in one process on embedded defaults."""
