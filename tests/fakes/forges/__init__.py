"""Fake GitHub and Forgejo: real aiohttp servers on loopback, strict about every request.

Each fake checks authentication the way the forge does, validates request
bodies against the official schemas in ``tests/fixtures/forge/*/schemas``
(422 with the validation errors otherwise), serves workflow files per
(repo, sha) in the forge's response format, records every call, and can be
told to fail (5xx) or hang (timeouts) for the next N calls.
"""

from tests.fakes.forges.base import Call, FakeForge, Fault
from tests.fakes.forges.forgejo import FakeForgejo
from tests.fakes.forges.github import FakeGitHub, rsa_key_pair

__all__ = ["Call", "FakeForge", "FakeForgejo", "FakeGitHub", "Fault", "rsa_key_pair"]
