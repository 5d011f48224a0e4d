"""Greenness settings from YAML: queues, projects, hooks; mistakes named by their setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import load_config
from common.errors import ConfigError
from integration.greenness.selection import matches
from integration.settings import IntegrationSettings

YAML = """\
greenness:
  enabled: true
  incomplete_after: 30m
  queues:
    main: {repo: "forgejo:acme/app", ref: refs/heads/main, poll_interval: 60s, weights: {build: 2}}
  projects:
    web: {repo: "forgejo:acme/app", paths: ["web/**"], jobs: [web-test]}
  hooks:
    deploy: {url: "https://deploy.example/hook", secret: "s3cret-value", queues: ["forgejo:acme/*:refs/heads/main"]}
    notify: {command: ["/usr/bin/logger", "green"], timeout: 5s}
"""


def load(tmp_path: Path, text: str) -> IntegrationSettings:
    path = tmp_path / "integration.yaml"
    path.write_text(text)
    return load_config(IntegrationSettings, path, env={})


def test_greenness_settings_load_from_yaml(tmp_path: Path):
    g = load(tmp_path, YAML).greenness
    assert g.enabled and g.incomplete_after == 1800
    assert g.queues["main"].poll_interval == 60 and g.queues["main"].weights == {"build": 2}
    assert g.tracks("forgejo", "acme/app", "refs/heads/main")
    assert not g.tracks("forgejo", "acme/app", "refs/pull/1/head")
    assert g.hooks["deploy"].follows("forgejo:acme/app:refs/heads/main", "")
    assert not g.hooks["deploy"].follows("forgejo:other/app:refs/heads/main", "")
    assert g.hooks["notify"].command == ("/usr/bin/logger", "green") and "s3cret" not in repr(g.hooks["deploy"])
    assert not load(tmp_path, "").greenness.tracks("forgejo", "acme/app", "refs/heads/main")  # off by default


@pytest.mark.parametrize(("snippet", "message"), [
    ('hooks: {deploy: {url: "https://x.example/h"}}', "greenness.hooks.deploy.secret is needed"),
    ("hooks: {deploy: {}}", "greenness.hooks.deploy needs a url or a command"),
    ('hooks: {deploy: {url: "ftp://x", secret: "s"}}', "greenness.hooks.deploy.url must be an http(s) URL"),
    ('queues: {main: {repo: "acme/app"}}', "greenness.queues.main.repo: 'acme/app' is not a repository"),
    ('queues: {main: {repo: "github:a/b", weights: {build: -1}}}', "greenness.queues.main.weights.build"),
    ('projects: {web: {repo: "github:a/b", paths: ["web/**"]}}', "greenness.projects.web needs paths and jobs"),
])
def test_mistakes_are_named(tmp_path: Path, snippet: str, message: str):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        load(tmp_path, f"greenness:\n  {snippet}\n")


def test_path_patterns():
    assert matches("web/**", "web/a/b.js") and matches("web/", "web/x") and not matches("web/**", "webby/x")
    assert matches("*.md", "README.md") and not matches("*.md", "docs/a.md") and matches("**/*.md", "docs/a.md")
    assert matches("proto/*.proto", "proto/a.proto") and not matches("proto/*.proto", "proto/x/a.proto")
