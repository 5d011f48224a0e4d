"""Shape checks shared by every node kind: properties, arguments, children, env.

Problems are collected with their offsets, never raised, so one pass over a
file reports all of them; ``errors`` returns them in file order.
"""

from __future__ import annotations

import functools
import json

from common.durations import parse_duration
from common.errors import DurationError
from common.workflow.errors import WorkflowError
from common.workflow.limits import DEFAULT_LIMITS, WorkflowLimits, show_bytes
from common.workflow.model import Env
from common.workflow.names import ENV_NAME_RULE, is_env_name
from common.workflow.syntax import RawNode, SourceMap
from common.workflow.values import STRING, show, typed


@functools.lru_cache(maxsize=256)
def _seconds(text: str) -> float:
    # Timeouts are millisecond-granular; rounding drops float noise such as
    # 51ms -> 0.051000000000000004 so equal files compare equal. Cached:
    # large workflows repeat the same few durations thousands of times.
    return round(parse_duration(text), 3)


class NodeChecker:
    """Collects errors with positions and checks the shapes every node kind shares."""

    def __init__(self, text: str, filename: str, limits: WorkflowLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._file = filename
        self._map = SourceMap(text)
        self._found: list[tuple[int, WorkflowError]] = []

    @property
    def errors(self) -> list[WorkflowError]:
        return [error for _, error in sorted(self._found, key=lambda item: item[0])]

    def error(self, offset: int, path: str, message: str) -> None:
        line, col = self._map.line_col(offset)
        self._found.append((offset, WorkflowError(self._file, line, col, path, message)))

    def at(self, offset: int) -> str:
        line, col = self._map.line_col(offset)
        return f"{line}:{col}"

    # -- generic shape checks -------------------------------------------------

    def props(self, node: RawNode, path: str, allowed: dict[str, str]) -> dict[str, tuple[object, int]]:
        """Known, well-typed properties as ``key -> (value, offset)``."""
        found: dict[str, tuple[object, int]] = {}
        for prop in node.props:
            kind = allowed.get(prop.key)
            if kind is None:
                choices = ", ".join(allowed) or "none"
                self.error(prop.start, path, f'unknown property "{prop.key}" (allowed: {choices})')
                continue
            value, problem = typed(prop.value, kind)
            if problem:
                self.error(prop.value.start, path, f'property "{prop.key}" {problem}')
                continue
            found[prop.key] = (value, prop.start)
        return found

    def no_args(self, node: RawNode, path: str) -> None:
        for arg in node.args:
            self.error(arg.start, path, f"unexpected argument {show(arg.value)} ({node.name} takes no arguments)")

    def no_children(self, node: RawNode, path: str) -> None:
        if node.children:
            first = node.children[0]
            self.error(first.start, path, f'unexpected child node "{first.name}" ({node.name} takes no children)')

    def untagged(self, node: RawNode, path: str) -> None:
        if node.tag is not None:
            self.error(node.start, path, f"type annotations such as ({node.tag}) are not supported")

    def unknown_child(self, child: RawNode, path: str, allowed: tuple[str, ...]) -> None:
        self.error(child.start, path, f'unknown node "{child.name}" (allowed here: {", ".join(allowed)})')

    def string_args(self, node: RawNode, path: str) -> list[tuple[str, int]]:
        """All arguments of a list node (needs, secret), which must be strings."""
        values = []
        for arg in node.args:
            value, problem = typed(arg, STRING)
            if problem:
                self.error(arg.start, path, f"argument {show(arg.value)} {problem}")
            else:
                values.append((str(value), arg.start))
        if not node.args and not node.props:
            self.error(node.start, path, f"{node.name} lists nothing: give one or more names")
        return values

    def timeout(self, found: dict[str, tuple[object, int]], path: str) -> float | None:
        if "timeout" not in found:
            return None
        text, offset = found["timeout"]
        try:
            seconds = _seconds(str(text))
        except DurationError as err:
            reason = str(err).split(": ", 1)[-1]
            self.error(offset, path, f"invalid timeout {json.dumps(text)}: {reason}")
            return None
        if seconds > self.limits.max_timeout:
            self.error(offset, path, f"timeout {json.dumps(text)} is longer than the limit of "
                                     f"{self.limits.max_timeout:g}s {self.limits.setting('max_timeout')}")
            return None
        return seconds

    def single_line(self, found: dict[str, tuple[object, int]], key: str, path: str) -> str | None:
        if key not in found:
            return None
        text, offset = found[key]
        text = str(text)
        if not text.strip() or "\n" in text or "\r" in text:
            self.error(offset, path, f'property "{key}" must be a non-empty single line')
            return None
        if len(text) > self.limits.max_name_chars:
            self.error(offset, path, f'property "{key}" is {len(text)} characters long; the limit is '
                                     f"{self.limits.max_name_chars} {self.limits.setting('max_name_chars')}")
            return None
        return text

    # -- env ------------------------------------------------------------------

    def env(self, nodes: list[RawNode], path: str) -> Env:
        """Merge a level's ``env`` nodes; a name set twice is an error."""
        pairs: dict[str, str] = {}
        first_at: dict[str, int] = {}
        for node in nodes:
            env_path = f"{path} > env"
            self.untagged(node, env_path)
            self.no_args(node, env_path)
            self.no_children(node, env_path)
            if not node.props and not node.args and not node.children:
                self.error(node.start, env_path, 'env sets no variables: write env NAME="value"')
            for prop in node.props:
                if not is_env_name(prop.key):
                    self.error(prop.start, env_path, f'invalid env name "{prop.key}": use {ENV_NAME_RULE}')
                    continue
                value, problem = typed(prop.value, STRING)
                if problem:
                    self.error(prop.value.start, env_path, f'env "{prop.key}" {problem}')
                    continue
                if prop.key in first_at:
                    self.error(
                        prop.start, env_path,
                        f'env "{prop.key}" is set twice (first at {self.at(first_at[prop.key])})',
                    )
                    continue
                if len(first_at) == self.limits.max_env_vars:
                    self.error(prop.start, env_path, f"more than {self.limits.max_env_vars} env variables "
                                                     f"here {self.limits.setting('max_env_vars')}")
                size = len(str(value).encode())
                if size > self.limits.max_env_value_bytes:
                    self.error(prop.value.start, env_path,
                               f'env "{prop.key}" is {show_bytes(size)}; the limit is '
                               f"{show_bytes(self.limits.max_env_value_bytes)} "
                               f"{self.limits.setting('max_env_value_bytes')}")
                first_at[prop.key] = prop.start
                pairs[prop.key] = str(value)
        return tuple(pairs.items())
