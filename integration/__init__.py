"""Forge integration: GitHub and Forgejo webhooks in, job requests out;
job events in, GitHub Checks and Forgejo commit statuses out.

    webhooks      POST /webhooks/{github,forgejo}: size cap, signature, JSON  (add_webhook_routes)
    signature     HMAC-SHA256, constant-time compare
    service       WebhookService: normalize, dedupe, read workflow, publish JobRequests
    events        normalized, forge-independent webhook events
    forges/       per forge: *_events (payload -> events), *_api (REST), github_app (JWT -> tokens), http (retries)
    policy        fork pull requests: build or not, trusted or not
    jobs          workflow + build -> JobRequests
    cancel        JobCanceller interface (PR closed), LoggingCanceller
    store/        SeenStore: dedupe claims + report records (SQLite, PostgreSQL)
    reporting/    EventReporter (job events -> forge), GitHub check runs, Forgejo statuses
    external/     out-of-tree CI: the relay to allowlisted downstreams, POST /api/v1/results, the read API
    runtime       Integration: everything wired from IntegrationSettings
    app, cli      the multi-host aiohttp app and ``solstice-integration serve``

See docs/forges.md.
"""
