"""Cache key templates: ``cargo-{{ hash Cargo.lock }}`` to ``cargo-3f9a…``.

A key is literal text in a small alphabet (it names a ZFS snapshot and a
directory) with ``{{ … }}`` expressions:

    {{ hash GLOB [GLOB …] }}   sha256 of the matching files (paths relative to
                               the checkout, contents), 24 hex digits; no match
                               hashes to the digest of nothing
    {{ runs_on }}              the job's image label

The parser checks templates (``template_problem``); the runner resolves them
after checkout (``resolve_key``), when the files exist.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

KEY_CHARS = "letters, digits, '.', '_' and '-'"
_LITERAL = re.compile(r"[A-Za-z0-9._-]*")
_EXPR = re.compile(r"\{\{(.*?)\}\}")
MAX_KEY_CHARS = 200  # after resolution: a snapshot name stays far below ZFS's 256
HASH_DIGITS = 24
KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def _split(template: str) -> list[tuple[str, str]]:
    """``[("lit", text) | ("expr", inner)]``; ValueError with the reason if malformed."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for match in _EXPR.finditer(template):
        parts.append(("lit", template[pos:match.start()]))
        parts.append(("expr", match.group(1).strip()))
        pos = match.end()
    parts.append(("lit", template[pos:]))
    for kind, text in parts:
        if kind == "lit":
            if "{{" in text or "}}" in text:
                raise ValueError("has an unclosed {{ or a stray }}")
            if not _LITERAL.fullmatch(text):
                bad = next(ch for ch in text if not _LITERAL.fullmatch(ch))
                raise ValueError(f"has {bad!r} outside {{{{ }}}}: use {KEY_CHARS}")
    return parts


def _expr_problem(inner: str) -> str | None:
    words = inner.split()
    if not words:
        return "has an empty {{ }}"
    if words[0] == "hash":
        if len(words) == 1:
            return "has {{ hash }} without a file: write {{ hash Cargo.lock }}"
        for glob in words[1:]:
            if glob.startswith("/") or ".." in glob.split("/"):
                return f"hashes {glob!r}: files must be inside the checkout"
        return None
    if words[0] == "runs_on":
        return None if len(words) == 1 else "has {{ runs_on }} with arguments"
    return f"has an unknown expression {{{{ {words[0]} }}}} (known: hash, runs_on)"


def template_problem(template: str) -> str | None:
    """Why ``template`` is not a valid key template, or None."""
    if not template.strip():
        return "is empty"
    try:
        parts = _split(template)
    except ValueError as err:
        return str(err)
    for kind, text in parts:
        if kind == "expr":
            problem = _expr_problem(text)
            if problem:
                return problem
    static = "".join(text for kind, text in parts if kind == "lit")
    if len(static) > MAX_KEY_CHARS - HASH_DIGITS:
        return f"is longer than {MAX_KEY_CHARS} characters"
    if not template[0].isalnum():
        return "must start with a letter or digit"
    return None


def hash_files(root: Path, globs: list[str]) -> str:
    """The digest of the files under ``root`` matching ``globs`` (sorted, paths and contents)."""
    digest = hashlib.sha256()
    root = root.resolve()
    files: set[Path] = set()
    for glob in globs:
        for found in root.glob(glob):
            if found.is_file() and found.resolve().is_relative_to(root):
                files.add(found)
    for path in sorted(files):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:HASH_DIGITS]


def resolve_key(template: str, root: Path, runs_on: str) -> str:
    """The key ``template`` names for the checkout at ``root``; ValueError if it cannot be one."""
    out = []
    for kind, text in _split(template):
        if kind == "lit":
            out.append(text)
            continue
        words = text.split()
        problem = _expr_problem(text)
        if problem:
            raise ValueError(f"cache key {template!r} {problem}")
        out.append(hash_files(root, words[1:]) if words[0] == "hash" else runs_on)
    key = "".join(out)
    if not KEY_RE.fullmatch(key):
        raise ValueError(f"cache key {key!r} (from {template!r}) is not 1-{MAX_KEY_CHARS} of {KEY_CHARS}")
    return key
