"""Validation errors: each one says where (file, line, column, node) and what."""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import SolsticeError


@dataclass(frozen=True, slots=True)
class WorkflowError:
    """One problem found in a workflow file.

    ``path`` names the node, e.g. ``job "build" > step #2``; it is empty for
    problems with the file as a whole (such as KDL syntax errors).
    """

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.col}: {where}{self.message}"


class WorkflowInvalid(SolsticeError):
    """A workflow file failed validation; ``errors`` lists every problem found."""

    def __init__(self, errors: list[WorkflowError]) -> None:
        self.errors = tuple(errors)
        count = len(self.errors)
        head = f"{count} error{'s' if count != 1 else ''} in workflow"
        super().__init__(head + ":\n" + "\n".join(str(e) for e in self.errors))


class WorkflowNotFound(SolsticeError):
    """The workflow file does not exist or cannot be read."""
