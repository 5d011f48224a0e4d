"""The zonecfg lexer (illumos.md §2.2): commands split on newline and ``;``.

``#`` starts a comment only where a command would start; elsewhere it is an
ordinary token (so a trailing ``# ...`` is a syntax error, as for real).
Unquoted tokens stop at whitespace, ``"``, ``;``, ``=``, ``[``, ``]``, ``(``,
``)`` and - inside lists and complex values - ``,``. Double quotes cannot be
escaped.
"""

from __future__ import annotations

from dataclasses import dataclass

SPECIAL = "=[](),"


@dataclass(frozen=True)
class Token:
    text: str
    quoted: bool = False


@dataclass
class Command:
    line: int
    tokens: list[Token]
    error: str | None = None  # a lexical error (e.g. an unterminated quote)


def lex(text: str) -> list[Command]:
    commands: list[Command] = []
    line = 1
    i = 0
    n = len(text)
    current: list[Token] = []
    start_line = 1
    depth = 0
    error: str | None = None

    def flush() -> None:
        nonlocal current, error, depth
        if current or error:
            commands.append(Command(start_line, current, error))
        current, error, depth = [], None, 0

    while i < n:
        c = text[i]
        if c == "\n":
            flush()
            line += 1
            i += 1
            continue
        if c == ";":
            flush()
            i += 1
            continue
        if c in " \t\r":
            i += 1
            continue
        if not current:
            start_line = line
            if c == "#":
                while i < n and text[i] != "\n":
                    i += 1
                continue
        if c == '"':
            end = text.find('"', i + 1)
            nl = text.find("\n", i + 1)
            if end < 0 or (0 <= nl < end):
                error = "unterminated quoted string"
                i = nl if nl >= 0 else n
                continue
            current.append(Token(text[i + 1:end], quoted=True))
            i = end + 1
            continue
        if c in "([":
            depth += 1
        if c in ")]":
            depth = max(0, depth - 1)
        if c in "=[]()" or (c == "," and depth):
            current.append(Token(c))
            i += 1
            continue
        j = i
        stops = ' \t\r\n";=[]()' + ("," if depth else "")
        while j < n and text[j] not in stops:
            j += 1
        current.append(Token(text[i:j]))
        i = j
    flush()
    return commands
