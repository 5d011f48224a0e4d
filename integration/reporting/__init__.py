"""Job events in, forge statuses out.

    states      JobState -> rank, GitHub status/conclusion, Forgejo state
    summary     check-run titles and summaries (step results, failing log tail), within GitHub's limits
    contract    the ForgeReporter interface
    github      check runs (one per job attempt)
    forgejo     commit statuses (context ``solstice/<job key>``)
    consumer    EventReporter: the event-queue handler (ordering, dedupe, retry/give-up)
"""
