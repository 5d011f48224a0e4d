"""Single-node mode (``solstice serve``): integration + orchestrator in one process on embedded defaults.

``settings`` (ServeSettings, SOLSTICE_* names), ``queue`` (one LocalQueue as
everyone's publisher and the node's consumer), ``web`` (webhooks, /healthz,
job pages), ``cancel`` (pull request closed -> its jobs cancelled),
``routing`` (labels to drivers), ``server`` (the wiring and supervision), ``cli`` (the ``solstice`` program).
"""
