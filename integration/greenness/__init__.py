"""Greenness: which commit of a queue is safe (Stovepipe-style last-green per queue), and who is told.

    model       queues, expected jobs, verdicts, transitions (frozen dataclasses)
    degree      the degree of one commit in one scope (pure)
    selection   incremental since green: what a new head must run, from changed paths
    settings    the ``greenness`` section of the integration's settings
    store/      the tables (SQLite and PostgreSQL) and every state change as one transaction
    recorder    commits in from the build path, outcomes in from job events, verdicts out
    hooks       signed webhook and command deliveries, once per transition, in order per queue
    poller      ingest by polling a ref's head
    forges      changed paths and ref heads from Forgejo and GitHub
    api, badge  JSON and SVG over HTTP
    column      the dashboard's matrix column and last-green lines
    service     all of it wired from settings, with its task (``Greenness``)

See docs/greenness.md.
"""
