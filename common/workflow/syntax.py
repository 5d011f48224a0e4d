"""KDL text to a tree of raw nodes that remember where every part came from.

kdl-py's parse result drops source positions, but its converters receive a
``ParseFragment`` that knows where the node or value started. We hook one
converter for every node and one for every value so that each node, property
and argument carries its character offset; line and column are computed only
when an error needs them (kdl-py's own ``lineCol`` rescans the whole text on
every call, which would make validation quadratic).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import cast

import kdl
import kdl.errors
import kdl.types

_PARSE_ERROR_PREFIX = re.compile(r"^\d+:\d+ parse error:\s*", re.DOTALL)


class KdlSyntaxError(Exception):
    """The text is not KDL; ``line``/``col`` are where kdl-py stopped."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.col = col
        self.message = message


@dataclass(slots=True)
class RawValue:
    """One KDL value as written: the kdl-py value object and its offset."""

    value: kdl.types.Value
    start: int


@dataclass(slots=True)
class RawProp:
    """A ``key=value`` property; ``start`` is the offset of its key."""

    key: str
    value: RawValue
    start: int


@dataclass(slots=True)
class RawNode:
    """A KDL node with the offsets of the node and of each of its entries."""

    name: str
    tag: str | None
    start: int
    args: list[RawValue] = field(default_factory=list)
    props: list[RawProp] = field(default_factory=list)
    children: list[RawNode] = field(default_factory=list)


class SourceMap:
    """Turns character offsets into 1-based (line, column) pairs."""

    def __init__(self, text: str) -> None:
        self._line_starts = [0]
        find = text.find
        i = find("\n")
        while i != -1:
            self._line_starts.append(i + 1)
            i = find("\n", i + 1)

    def line_col(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1


def _offset(fragment: kdl.errors.ParseFragment) -> int:
    # ParseFragment exposes no public offset; ``_i`` is where the parser was
    # when it built the fragment (node start for nodes, value end for values).
    return fragment._i  # noqa: SLF001


def _convert_value(value: kdl.types.Value, fragment: kdl.errors.ParseFragment) -> RawValue:
    return RawValue(value, _offset(fragment) - len(fragment.fragment))


def _key_start(text: str, key: str, value_start: int) -> int:
    """Offset of a property's key, found by stepping back from its value.

    Falls back to the value's offset for keys written with escapes
    (a quoted key with escapes reads differently from its source text).
    """
    end = value_start
    if end > 0 and text[end - 1] == ")":
        end = text.rfind("(", 0, end)
    if end <= 0 or text[end - 1] != "=":
        return value_start
    end -= 1
    for written in (key, f'"{key}"'):
        start = end - len(written)
        if start >= 0 and text[start:end] == written:
            return start
    return value_start


class _Converter:
    def __init__(self, text: str) -> None:
        self._text = text

    def node(self, node: kdl.types.Node, fragment: kdl.errors.ParseFragment) -> RawNode:
        text = self._text
        props = [
            RawProp(key, value, _key_start(text, key, value.start))
            for key, value in node.props.items()
        ]
        # kdl-py leaves ``nodes`` None when the children block is slashdashed (``step ... /-{ }``);
        # otherwise they were made by this hook already (kdl-py builds bottom-up).
        children = cast(list[RawNode], node.nodes or [])
        return RawNode(node.name, node.tag, _offset(fragment), node.args, props, children)


def parse_kdl(text: str) -> list[RawNode]:
    """Parse ``text`` into raw nodes; raise KdlSyntaxError on bad KDL."""
    converter = _Converter(text)
    config = kdl.ParseConfig(
        nativeUntaggedValues=False,
        nativeTaggedValues=False,
        valueConverters={...: _convert_value},
        nodeConverters={...: converter.node},
    )
    try:
        document = kdl.Parser().parse(text, config)
    except kdl.errors.ParseError as err:
        message = _PARSE_ERROR_PREFIX.sub("", str(err)).strip()
        message = " ".join(message.split())
        raise KdlSyntaxError(err.line, err.col, message) from err
    except RecursionError:
        # kdl-py parses children recursively: hundreds of nested blocks exhaust
        # the stack before any real workflow would (it needs four levels).
        raise KdlSyntaxError(1, 1, "nodes nest too deeply for the parser (a real workflow needs four levels)") from None
    return cast(list[RawNode], list(document.nodes))  # each one made by _Converter.node
