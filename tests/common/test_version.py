"""Which runner versions an orchestrator speaks, and the reasons it gives when it does not."""

from __future__ import annotations

import pytest

from common.version import VERSION, RunnerRefused, Version, check_runner


def test_this_runner_is_spoken():
    assert check_runner(VERSION, "debian-12@20261201-1a2b3c4d") == Version.parse(VERSION)


@pytest.mark.parametrize("runner", ["0.4.0", "0.4.7", "0.5.2", "0.5", "0.5.0-dev", "0.5.1+g1234"])
def test_versions_between_the_minimum_and_ours_are_spoken(runner: str):
    assert check_runner(runner, "x@1", ours="0.5.3", minimum="0.4").protocol in ((0, 4), (0, 5))


def test_an_older_runner_is_refused_with_what_to_do():
    with pytest.raises(RunnerRefused) as info:
        check_runner("0.3.9", "illumos-stable@2026-11-01", ours="0.5.0", minimum="0.4")
    assert str(info.value) == ("runner 0.3 in image illumos-stable@2026-11-01 is older than this "
                               "orchestrator's minimum 0.4: rebuild the image")


def test_a_newer_runner_is_refused_too():
    with pytest.raises(RunnerRefused) as info:
        check_runner("0.6.0", "", ours="0.5.0", minimum="0.4")
    assert str(info.value) == ("runner 0.6 in an image that does not name itself is newer than this "
                               "orchestrator (0.5) speaks: upgrade the orchestrator or use an older image")


@pytest.mark.parametrize("announced, why", [("", "announced no version"), ("v", "which is not a version"),
                                            ("1.x", "which is not a version"),
                                            ("x" * 500, "which is not a version")])
def test_no_or_garbled_versions_are_refused(announced: str, why: str):
    with pytest.raises(RunnerRefused) as info:
        check_runner(announced, "img@1")
    assert why in str(info.value) and len(str(info.value)) < 200


def test_versions_order_by_number_not_text():
    assert Version.parse("0.10.0") > Version.parse("0.9.9")
    assert str(Version.parse("1.2")) == "1.2.0"
