"""Forge integration: GitHub and Forgejo webhooks in, job requests out;
job events in, GitHub Checks and Forgejo commit statuses out."""
