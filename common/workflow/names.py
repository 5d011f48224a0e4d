"""The grammar of ids, labels and names in a workflow, in one place."""

from __future__ import annotations

import re

# Job ids and runs_on labels end up in zone names, queue routing keys and
# file names, so they are kept to a small, shell- and URL-safe alphabet.
ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
ID_RULE = "1-63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"

# Env and secret names become environment variables of the step's process.
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_NAME_RULE = "letters, digits and '_', not starting with a digit"


def is_id(text: str) -> bool:
    """True if ``text`` is a valid job id or runs_on label."""
    return ID_RE.fullmatch(text) is not None


def is_env_name(text: str) -> bool:
    """True if ``text`` is a valid env or secret name."""
    return ENV_NAME_RE.fullmatch(text) is not None


def workdir_problem(path: str) -> str | None:
    """Why ``path`` is not a usable step working directory, or None if it is."""
    if not path.strip():
        return "must not be empty"
    if "\0" in path or "\n" in path:
        return "must not contain NUL or newline characters"
    if path.startswith("/"):
        return "must be relative to the checkout, not absolute"
    if ".." in path.split("/"):
        return "must stay inside the checkout ('..' is not allowed)"
    return None
