"""ciadm: the operator's command-line client of the orchestrator's AdminService."""
