"""cidev: the developer's command-line tool: validate, inspect and run workflows."""
