"""The runner: the agent inside every VM. Fetches its job over gRPC, checks
out the commit, runs the steps, streams the logs, reports the results."""
