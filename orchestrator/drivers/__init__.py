"""VM drivers: one throw-away VM per job (bhyve zones on illumos, a local process elsewhere).

``base`` holds the interface and ``VmSpec``; ``bhyve`` and ``local`` are the two
implementations; ``registry`` chooses one from configuration and reconciles.
This package deliberately imports nothing at load time so that
``orchestrator.commands`` and the drivers can import each other's modules freely.
"""
