import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("500ms", 0.5), ("1d", 86400), ("1.5h", 5400)],
)
def test_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "90", "s", "1x", "1 h", "-5s", "0s", "1h 30m", "h1"])
def test_parse_rejects(text):
    with pytest.raises(DurationError) as err:
        parse_duration(text)
    assert repr(text) in str(err.value)


@given(st.integers(min_value=1, max_value=10**9))
def test_format_round_trip_millis(millis):
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_format_prefers_units():
    assert format_duration(5400) == "1h30m"
    assert format_duration(0.25) == "250ms"
