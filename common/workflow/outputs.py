"""The ``artifact`` and ``cache`` nodes of a job: checked shapes to model objects.

    artifact "dist" path="dist/*.p5p" expire="30d" when="always"
    cache "cargo" key="cargo-{{ hash Cargo.lock }}" path="~/.cargo" restore_keys="cargo-"

Each takes its name as its one argument (a job id-like name, unique among the
job's artifacts or caches). The checks live here, apart from the parser's
walk, so each node kind stays one small concept.
"""

from __future__ import annotations

import json

from common.workflow.cachekeys import template_problem
from common.workflow.checks import NodeChecker, _seconds
from common.workflow.model import Artifact, Cache
from common.workflow.names import ID_RULE, is_id
from common.workflow.syntax import RawNode
from common.workflow.values import STRING, typed

ARTIFACT_PROPS = {"path": STRING, "expire": STRING, "when": STRING}
CACHE_PROPS = {"key": STRING, "path": STRING, "restore_keys": STRING}
WHEN = ("success", "failure", "always")
MAX_ARTIFACTS = 16  # per job
MAX_CACHES = 8  # per job: each is a disk of the VM on bhyve
MAX_EXPIRE = 365 * 86400.0


def _path_problem(path: str, home: bool) -> str | None:
    if not path.strip():
        return "must not be empty"
    if "\0" in path or "\n" in path:
        return "must not contain NUL or newline characters"
    if ".." in path.split("/"):
        return "must not contain '..'"
    if path.startswith("/") and not home:
        return "must be relative to the checkout, not absolute"
    return None


class OutputChecks:
    """Checks ``artifact`` and ``cache`` nodes, reporting through a ``NodeChecker``."""

    def __init__(self, checker: NodeChecker) -> None:
        self.c = checker

    def _name(self, node: RawNode, path: str) -> str | None:
        c = self.c
        c.untagged(node, path)
        c.no_children(node, path)
        if len(node.args) != 1:
            at = node.args[1].start if len(node.args) > 1 else node.start
            c.error(at, path, f'{node.name} takes exactly one name argument: {node.name} "name" ...')
            return None
        value, problem = typed(node.args[0], STRING)
        if problem:
            c.error(node.args[0].start, path, f"{node.name} name {problem}")
            return None
        if not is_id(str(value)):
            c.error(node.args[0].start, path, f"invalid {node.name} name {json.dumps(value)}: use {ID_RULE}")
            return None
        return str(value)

    def _required(self, node: RawNode, found: dict[str, tuple[object, int]], key: str, path: str) -> bool:
        if key in found:
            return True
        if not any(p.key == key for p in node.props):  # a mistyped one is reported already
            self.c.error(node.start, path, f'{node.name} is missing required property "{key}"')
        return False

    def artifact(self, node: RawNode, path: str, seen: dict[str, int]) -> Artifact | None:
        """An ``artifact`` node, or None (problems reported)."""
        c = self.c
        name = self._name(node, path)
        found = c.props(node, path, ARTIFACT_PROPS)
        ok = self._required(node, found, "path", path) and name is not None
        glob = str(found["path"][0]) if "path" in found else ""
        if "path" in found:
            problem = _path_problem(glob, home=False)
            if problem:
                c.error(found["path"][1], path, f"artifact path {json.dumps(glob)} {problem}")
                ok = False
        expire = None
        if "expire" in found:
            text, offset = found["expire"]
            try:
                expire = _seconds(str(text))
            except ValueError as err:
                c.error(offset, path, f"invalid expire {json.dumps(text)}: {str(err).split(': ', 1)[-1]}")
                ok = False
            else:
                if expire > MAX_EXPIRE:
                    c.error(offset, path, f"expire {json.dumps(text)} is longer than 365d")
                    ok = False
        when = str(found.get("when", ("success", 0))[0])
        if when not in WHEN:
            c.error(found["when"][1], path, f"invalid when {json.dumps(when)}: use one of {', '.join(WHEN)}")
            ok = False
        if not self._unique(node, name, seen, path):
            ok = False
        return Artifact(name=name, path=glob, expire=expire, when=when) if ok and name else None

    def cache(self, node: RawNode, path: str, seen: dict[str, int]) -> Cache | None:
        """A ``cache`` node, or None (problems reported)."""
        c = self.c
        name = self._name(node, path)
        found = c.props(node, path, CACHE_PROPS)
        ok = name is not None
        ok = self._required(node, found, "key", path) and ok
        ok = self._required(node, found, "path", path) and ok
        key = str(found["key"][0]) if "key" in found else ""
        if "key" in found:
            problem = template_problem(key)
            if problem:
                c.error(found["key"][1], path, f"cache key {json.dumps(key)} {problem}")
                ok = False
        where = str(found["path"][0]) if "path" in found else ""
        if "path" in found:
            problem = _path_problem(where, home=True)
            if problem is None and where.startswith("~") and not (where == "~" or where.startswith("~/")):
                problem = "may start with ~/ (the job user's home), not ~user"
            if problem:
                c.error(found["path"][1], path, f"cache path {json.dumps(where)} {problem}")
                ok = False
        restore: list[str] = []
        if "restore_keys" in found:
            text, offset = str(found["restore_keys"][0]), found["restore_keys"][1]
            restore = [part.strip() for part in text.split(",")]
            for prefix in restore:
                problem = template_problem(prefix) if prefix else "has an empty entry"
                if problem:
                    c.error(offset, path, f"restore_keys entry {json.dumps(prefix)} {problem}")
                    ok = False
        if not self._unique(node, name, seen, path):
            ok = False
        return Cache(name=name, key=key, path=where, restore_keys=tuple(restore)) if ok and name else None

    def _unique(self, node: RawNode, name: str | None, seen: dict[str, int], path: str) -> bool:
        if name is None:
            return True
        limit = MAX_ARTIFACTS if node.name == "artifact" else MAX_CACHES
        if name in seen:
            self.c.error(node.args[0].start, path,
                         f'{node.name} "{name}" is defined twice (first at {self.c.at(seen[name])})')
            return False
        if len(seen) == limit:
            self.c.error(node.start, path, f"a job may have at most {limit} {node.name}s")
            return False
        seen[name] = node.start
        return True
