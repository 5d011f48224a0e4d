"""The CI dashboard: server-rendered pages over the state store, live job logs, sign-in.

    app        Dashboard: the routes (summary, matrix, pull request, job, live, sign-in, buttons)
    pages/     one module per page; layout: the shell and shared pieces
    live       a job's log and state as server-sent events
    logsource  LogSource: where logs are read (LocalLogs today; a cluster-wide reader later)
    logview    log lines as HTML (ansi: colours rendered, everything else escaped)
    auth       sign-in with operator tokens, cookies, CSRF
    actions    what cancel and re-run do
    columns    ColumnSource: the matrix's extension point for results of other systems
    links      links to the forges' own pages
    settings   the ``dashboard`` settings section
    static/    the one CSS file and the one script (no build step, nothing from a CDN)

docs/dashboard.md describes the pages, the settings and the read model behind them.
"""
