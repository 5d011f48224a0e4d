import base64
import io
import json
import logging
import urllib.parse

from hypothesis import given
from hypothesis import strategies as st

from common import log
from common.masking import MASK, Masker

SECRET = "hunter2-very-secret"


def test_plain_and_encodings_are_masked():
    m = Masker([SECRET])
    b64 = base64.b64encode(SECRET.encode()).decode()
    for text in (
        f"token={SECRET}",
        f"auth {b64}",
        f"auth {b64.rstrip('=')}",
        urllib.parse.quote(SECRET, safe=""),
        SECRET.encode().hex(),
    ):
        masked = m.mask(text)
        assert SECRET not in masked and MASK in masked, text


@given(st.binary(max_size=3), st.binary(max_size=3))
def test_secret_inside_base64_at_any_offset(prefix, suffix):
    m = Masker([SECRET])
    blob = base64.b64encode(prefix + SECRET.encode() + suffix).decode()
    masked = m.mask(blob)
    assert MASK in masked
    # The masked part covers all but the few characters shared with neighbours.
    assert len(blob) - len(masked) + len(MASK) >= len(SECRET) * 4 // 3 - 2


def test_bytes_masking_keeps_invalid_utf8():
    m = Masker([SECRET])
    data = b"\xff\xfe " + SECRET.encode() + b" \x80"
    assert m.mask_bytes(data) == b"\xff\xfe *** \x80"


def test_short_values_are_not_masked():
    m = Masker(["ab"])
    assert m.mask("a bab") == "a bab"
    assert not m


def test_longest_value_wins():
    m = Masker(["abcd", "abcdefgh"])
    assert m.mask("xabcdefghx") == "x***x"


def test_logging_masks_secrets_in_json_lines():
    stream = io.StringIO()
    log.setup_logging("info", "json", stream)
    log.masker.add("s3cr3t-value")
    logging.getLogger("t").info("connecting with %s", "s3cr3t-value", extra={"fields": {"job": "j1"}})
    doc = json.loads(stream.getvalue().splitlines()[-1])
    assert doc["msg"] == "connecting with ***"
    assert doc["job"] == "j1" and doc["level"] == "info"
