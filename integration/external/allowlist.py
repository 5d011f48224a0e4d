"""The allowlist: which downstream repositories receive an upstream's events, and at which level.

A YAML document (a file of the operator's, or a file in the upstream's own
repository fetched over https)::

    version: 1
    upstreams:
      github:octo-org/octo-repo:        # [forge:]owner/name; the forge defaults to github
        acme/xpu-ci: L2                 # a GitHub downstream: repository_dispatch
        acme/npu-ci: L4
        forgejo:lab/riscv-ci:           # a Forgejo downstream: a signed webhook to its URL
          level: L1
          webhook_url: https://ci.lab.example/hooks/solstice

Parsing is strict: an unknown key, a repeated repository, a level that is
not L1-L4, a Forgejo downstream without ``webhook_url`` are errors, and
every error names the line (``AllowlistInvalid``), so the operator can fix
the file while the previous version stays in force.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import yaml

from common.validation import RequestInvalid, check_repo
from integration.errors import IntegrationError
from integration.events import Forge
from integration.external.levels import Level

VERSION = 1
MAX_BYTES = 1024 * 1024
_DOWNSTREAM_KEYS = ("level", "webhook_url")


class AllowlistInvalid(IntegrationError):
    """An allowlist version that is not taken; ``line`` is 1-based (0 when the whole document is at fault)."""

    def __init__(self, source: str, line: int, problem: str) -> None:
        super().__init__(f"allowlist {source}{f':{line}' if line else ''}: {problem}")
        self.source = source
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True, order=True)
class RepoKey:
    """A repository on a forge: ``github:acme/xpu-ci``."""

    forge: Forge
    name: str  # owner/name

    def __str__(self) -> str:
        return f"{self.forge.value}:{self.name}"

    @classmethod
    def parse(cls, text: str, field_name: str = "repository") -> RepoKey:
        """``[forge:]owner/name``; ``RequestInvalid`` naming ``field_name`` when it is not one."""
        forge_text, colon, name = text.partition(":")
        if not colon:
            forge_text, name = Forge.GITHUB.value, text
        try:
            forge = Forge(forge_text)
        except ValueError:
            raise RequestInvalid(field_name, f"{forge_text!r} is not a forge: use github or forgejo") from None
        return cls(forge, check_repo(forge.value, name, field_name))


@dataclass(frozen=True, slots=True)
class Downstream:
    repo: RepoKey
    level: Level
    webhook_url: str = ""  # Forgejo downstreams only


@dataclass(frozen=True)
class Allowlist:
    """One version of the allowlist; ``digest`` tells versions apart."""

    upstreams: Mapping[RepoKey, tuple[Downstream, ...]] = field(default_factory=lambda: MappingProxyType({}))
    digest: str = ""

    def downstreams_of(self, upstream: RepoKey) -> tuple[Downstream, ...]:
        return self.upstreams.get(upstream, ())

    def entry(self, upstream: RepoKey, downstream: RepoKey) -> Downstream | None:
        for entry in self.downstreams_of(upstream):
            if entry.repo == downstream:
                return entry
        return None

    def level(self, upstream: RepoKey, downstream: RepoKey) -> Level | None:
        entry = self.entry(upstream, downstream)
        return entry.level if entry else None

    def best_level(self, downstream: RepoKey) -> Level | None:
        """The highest level ``downstream`` has for any upstream, None when it is not listed."""
        levels = [e.level for entries in self.upstreams.values() for e in entries if e.repo == downstream]
        return max(levels) if levels else None

    def all_downstreams(self) -> Iterator[tuple[RepoKey, Downstream]]:
        for upstream, entries in self.upstreams.items():
            for entry in entries:
                yield upstream, entry


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _scalar(node: yaml.Node, source: str, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or not isinstance(node.value, str) or node.value == "":
        raise AllowlistInvalid(source, _line(node), f"{what} must be a non-empty text")
    return node.value


def _pairs(node: yaml.Node, source: str, what: str) -> list[tuple[yaml.Node, yaml.Node]]:
    """The key/value nodes of a mapping, each key once."""
    if not isinstance(node, yaml.MappingNode):
        raise AllowlistInvalid(source, _line(node), f"{what} must be a mapping")
    seen: dict[str, int] = {}
    for key, _ in node.value:
        text = _scalar(key, source, f"a key of {what}")
        if text in seen:
            raise AllowlistInvalid(source, _line(key), f"{text!r} appears twice in {what} (first on line {seen[text]})")
        seen[text] = _line(key)
    return list(node.value)


def _repo(node: yaml.Node, source: str, what: str) -> RepoKey:
    try:
        return RepoKey.parse(_scalar(node, source, what), what)
    except RequestInvalid as err:
        raise AllowlistInvalid(source, _line(node), str(err)) from None


def _url(node: yaml.Node, source: str, allow_http: bool) -> str:
    url = _scalar(node, source, "webhook_url")
    if not (url.startswith("https://") or (allow_http and url.startswith("http://"))) or any(c in url for c in " \t\n"):
        raise AllowlistInvalid(source, _line(node), f"webhook_url {url!r} must be an https URL")
    return url


def _downstream(key: yaml.Node, value: yaml.Node, upstream: RepoKey, source: str, allow_http: bool) -> Downstream:
    repo = _repo(key, source, f"a downstream of {upstream}")
    if repo == upstream:
        raise AllowlistInvalid(source, _line(key), f"{upstream} cannot be its own downstream")
    webhook_url = ""
    if isinstance(value, yaml.ScalarNode):
        level_node: yaml.Node = value
    else:
        fields = {}
        for field_key, field_value in _pairs(value, source, f"downstream {repo}"):
            name = field_key.value
            if name not in _DOWNSTREAM_KEYS:
                raise AllowlistInvalid(source, _line(field_key),
                                       f"unknown key {name!r} for downstream {repo}: use {', '.join(_DOWNSTREAM_KEYS)}")
            fields[name] = field_value
        if "level" not in fields:
            raise AllowlistInvalid(source, _line(key), f"downstream {repo} has no level")
        level_node = fields["level"]
        if "webhook_url" in fields:
            webhook_url = _url(fields["webhook_url"], source, allow_http)
    try:
        level = Level.parse(_scalar(level_node, source, f"the level of {repo}"))
    except ValueError as err:
        raise AllowlistInvalid(source, _line(level_node), f"downstream {repo}: {err}") from None
    if repo.forge is Forge.FORGEJO and not webhook_url:
        raise AllowlistInvalid(source, _line(key), f"Forgejo downstream {repo} needs a webhook_url "
                                                   "(Forgejo has no repository_dispatch)")
    if repo.forge is Forge.GITHUB and webhook_url:
        raise AllowlistInvalid(source, _line(key), f"GitHub downstream {repo} takes repository_dispatch, "
                                                   "not a webhook_url")
    return Downstream(repo, level, webhook_url)


def parse_allowlist(text: str | bytes, source: str, allow_http: bool = False) -> Allowlist:
    """The allowlist in ``text`` (read from ``source``, named in errors); ``AllowlistInvalid`` otherwise."""
    if len(text) > MAX_BYTES:
        raise AllowlistInvalid(source, 0, f"the allowlist is larger than {MAX_BYTES} bytes")
    raw = text.encode() if isinstance(text, str) else text
    try:
        root = yaml.compose(raw.decode("utf-8"), Loader=yaml.SafeLoader)
    except UnicodeDecodeError as err:
        raise AllowlistInvalid(source, 0, f"the allowlist is not UTF-8 ({err.reason} at byte {err.start})") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        raise AllowlistInvalid(source, mark.line + 1 if mark else 0, f"not valid YAML: {err.problem}") from None
    except yaml.YAMLError as err:
        raise AllowlistInvalid(source, 0, f"not valid YAML: {err}") from None
    if root is None:
        raise AllowlistInvalid(source, 0, "the allowlist is empty: it needs 'version: 1' and 'upstreams'")
    top = dict((k.value, (k, v)) for k, v in _pairs(root, source, "the allowlist"))
    unknown = sorted(set(top) - {"version", "upstreams"})
    if unknown:
        raise AllowlistInvalid(source, _line(top[unknown[0]][0]),
                               f"unknown key {unknown[0]!r} at the top: use version and upstreams")
    if "version" not in top:
        raise AllowlistInvalid(source, _line(root), "the allowlist has no 'version' (use version: 1)")
    version_node = top["version"][1]
    if not isinstance(version_node, yaml.ScalarNode) or version_node.value != str(VERSION):
        raise AllowlistInvalid(source, _line(version_node),
                               f"version {getattr(version_node, 'value', '?')!r} is not supported: "
                               f"use version: {VERSION}")
    upstreams: dict[RepoKey, tuple[Downstream, ...]] = {}
    if "upstreams" in top:
        upstreams_node = top["upstreams"][1]
        if not (isinstance(upstreams_node, yaml.ScalarNode) and upstreams_node.value in ("", "null", "~")):
            for key, value in _pairs(upstreams_node, source, "upstreams"):
                upstream = _repo(key, source, "an upstream")
                if upstream in upstreams:
                    raise AllowlistInvalid(source, _line(key), f"upstream {upstream} appears twice")
                entries = [] if isinstance(value, yaml.ScalarNode) and value.value in ("", "null", "~") else [
                    _downstream(k, v, upstream, source, allow_http) for k, v in _pairs(value, source, str(upstream))]
                repos = [e.repo for e in entries]
                for index, repo in enumerate(repos):
                    if repo in repos[:index]:
                        raise AllowlistInvalid(source, _line(key), f"downstream {repo} appears twice under {upstream}")
                upstreams[upstream] = tuple(entries)
    return Allowlist(MappingProxyType(upstreams), hashlib.sha256(raw).hexdigest())
