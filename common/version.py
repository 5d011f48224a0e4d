"""Solstice's version, and which runner versions an orchestrator speaks.

The runner and the orchestrator are released together (one package, one
``VERSION``). A golden image freezes the runner it was built with, so an
orchestrator meets runners older than itself: the runner announces its
version on its first call (``GetJob``), and the orchestrator refuses one it
does not speak, with a reason that says what to do, before the job starts.

Compatibility is decided on ``major.minor``: a change of the runner protocol
raises the minor version (0.x) or the major (1.x and later); patch releases
never change it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from common.errors import SolsticeError

VERSION = "0.1.0"
# The oldest runner this orchestrator speaks. Raise it when the orchestrator
# starts relying on something older runners do not send or do.
MIN_RUNNER = "0.1"
# Written into every golden image by ``solstice-image build`` (``name@version``);
# the runner sends it along with its version so a refusal names the image.
IMAGE_FILE = "/etc/solstice/image"

_NUMBER = r"(0|[1-9][0-9]{0,5})"
_VERSION = re.compile(rf"^{_NUMBER}\.{_NUMBER}(?:\.{_NUMBER})?([.+-][0-9A-Za-z.+-]{{1,40}})?$")


class RunnerRefused(SolsticeError):
    """This orchestrator does not speak the runner's version; the message says what to do."""


@dataclass(frozen=True, order=True)
class Version:
    """``major.minor[.patch]``; anything after the patch (``-dev``, ``+g1234``) is ignored."""

    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> Version:
        m = _VERSION.fullmatch(text.strip())
        if m is None:
            raise ValueError(f"{text!r} is not a version (MAJOR.MINOR[.PATCH])")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))

    @property
    def protocol(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def short(version: Version) -> str:
    return f"{version.major}.{version.minor}"


def check_runner(announced: str, image: str, *, ours: str = VERSION, minimum: str = MIN_RUNNER) -> Version:
    """The runner's version if this orchestrator speaks it; ``RunnerRefused`` otherwise.

    ``image`` is what the runner says it was built into (``/etc/solstice/image``),
    so the operator knows which image to rebuild.
    """
    where = f"in image {image}" if image else "in an image that does not name itself"
    if not announced:
        raise RunnerRefused(f"the runner {where} announced no version (older than 0.1?): rebuild the image")
    try:
        runner = Version.parse(announced)
    except ValueError:
        raise RunnerRefused(f"the runner {where} announced {announced[:60]!r}, which is not a version: "
                            f"rebuild the image") from None
    low, high = Version.parse(minimum), Version.parse(ours)
    if runner.protocol < low.protocol:
        raise RunnerRefused(f"runner {short(runner)} {where} is older than this orchestrator's minimum "
                            f"{short(low)}: rebuild the image")
    if runner.protocol > high.protocol:
        raise RunnerRefused(f"runner {short(runner)} {where} is newer than this orchestrator "
                            f"({short(high)}) speaks: upgrade the orchestrator or use an older image")
    return runner
