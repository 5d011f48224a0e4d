"""Out-of-tree CI: upstream events relayed to allowlisted downstream CI, their results taken back.

    settings          ExternalSettings (section ``external``)
    levels            L1-L4: what a downstream may do
    allowlist         the YAML allowlist, parsed strictly (errors name their line)
    allowlist_source  the allowlist in force: file or https URL, kept in the store, refreshed
    upstream          an upstream webhook read for the relay; the versioned dispatch body
    senders           GitHub repository_dispatch, signed webhooks to Forgejo downstreams
    relay             UpstreamRelay: offer() from the webhook flow, the dispatch sender with retries and health
    oidc              JwksCache, TokenVerifier: GitHub Actions OIDC tokens
    report_schema     the results body (schemas/results-v1.schema.json), checked with named errors
    states            the state machine of one result key
    sink              LocalSink (the store), RemoteSink + ingest_handler (the dashboard served apart)
    results_api       POST /api/v1/results
    upstream_checks   L4 results shown on the upstream commit
    read              ExternalResults: the read API for the dashboard
    records           the dataclasses at every boundary
    store/            ExternalStore: SQLite and PostgreSQL
    service           ExternalCI: everything wired, its tasks and routes
    junit, report_cli solstice-report, the downstream's reporting helper

See docs/external-ci.md.
"""
