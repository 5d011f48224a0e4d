"""``cidev init --example NAME DIR``: a new git repository holding one of the examples, committed.

The examples are folders of this checkout (``examples/``), not repositories;
``cidev run`` and ``ciadm submit`` build commits. This makes the repository a
first run needs: the example's files copied into ``DIR`` (which must be new
or empty), ``git init`` on branch ``main`` and one commit.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from cidev.run_source import IDENTITY, run_git
from common.errors import SolsticeError
from common.workflow import DEFAULT_PATH

# The examples ship beside the packages in a checkout (an editable install runs from it).
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class InitError(SolsticeError):
    """The example is unknown or the target directory cannot take it."""


@dataclass(frozen=True)
class Created:
    """The repository ``init_example`` made."""

    root: Path
    example: str
    sha: str
    branch: str = "main"


def example_names(examples: Path = EXAMPLES) -> list[str]:
    """The examples there are: folders of ``examples/`` holding a workflow."""
    if not examples.is_dir():
        return []
    return sorted(p.name for p in examples.iterdir() if (p / DEFAULT_PATH).is_file())


async def init_example(name: str, target: Path, examples: Path = EXAMPLES) -> Created:
    """Copy example ``name`` into ``target``, make it a git repository and commit it."""
    names = example_names(examples)
    if not names:
        raise InitError(f"no examples found in {examples}: cidev init needs a Solstice checkout "
                        "(install it with scripts/bootstrap.sh)")
    if name not in names:
        raise InitError(f"unknown example {name!r}: choose one of {', '.join(names)}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InitError(f"{target} already exists and is not an empty directory: choose a new one")
    try:
        shutil.copytree(examples / name, target, dirs_exist_ok=True)
    except OSError as err:
        raise InitError(f"cannot create {target}: {err.strerror or err}") from err
    root = target.resolve()
    await run_git(["init", "-q", "-b", "main"], root)
    await run_git(["add", "-A"], root)
    await run_git(["commit", "-q", "-m", f"Solstice CI example: {name}"], root, IDENTITY)
    return Created(root, name, await run_git(["rev-parse", "HEAD"], root))
