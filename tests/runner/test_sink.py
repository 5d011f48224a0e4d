"""Pipe bytes -> numbered, masked, chunked log lines: nothing altered but secrets."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from common.logbatch import STDOUT, job_masker
from common.rpc import runner_pb2
from runner.sink import LogSink, pump
from runner.spool import Spool
from tests.runner.helpers import read_spool

CHUNK = 16


def rebuild(lines) -> bytes:
    """The byte stream the lines describe (continuations glue chunks back together)."""
    out = b""
    for i, ln in enumerate(lines):
        if i and not ln.continuation:
            out += b"\n"
        out += ln.content
    return out


class Reads:
    """A pipe whose every ``read`` returns the next piece, as written: the splits are real."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = [p for p in pieces if p]

    async def read(self, n: int) -> bytes:
        await asyncio.sleep(0)
        return self.pieces.pop(0) if self.pieces else b""


async def feed(tmp_path, pieces: list[bytes], secrets=(), batch_bytes=64):
    spool = Spool(tmp_path / "s.spool")
    sink = LogSink(runner_pb2.JobRef(job_id="j", attempt=1), job_masker(secrets), spool,
                   batch_bytes=batch_bytes, batch_delay=0.01, chunk_bytes=CHUNK)
    await pump(Reads(pieces), sink, 0, STDOUT)  # type: ignore[arg-type]
    sink.seal()
    spool.close()
    return read_spool(tmp_path / "s.spool"), sink


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=12))
def test_any_bytes_any_split_round_trip(tmp_path_factory, pieces):
    tmp = tmp_path_factory.mktemp("sink")
    lines, sink = asyncio.run(feed(tmp, pieces))
    data = b"".join(pieces)
    expected = data[:-1] if data.endswith(b"\n") else data
    assert rebuild(lines) == expected
    assert [ln.sequence for ln in lines] == list(range(1, len(lines) + 1))
    assert sink.last_sequence == len(lines)
    assert all(len(ln.content) <= CHUNK and b"\n" not in ln.content for ln in lines)


async def test_secret_split_across_reads_is_masked(tmp_path):
    lines, _ = await feed(tmp_path, [b"key=sup", b"ersecret-value\nnext\n"], secrets=["supersecret-value"])
    assert [ln.content for ln in lines] == [b"key=***", b"next"]


SECRET = b"supersecret-value"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"x")), st.binary(max_size=40),
       st.lists(st.integers(min_value=1, max_value=25), max_size=6))
def test_a_secret_in_an_over_long_line_is_masked_wherever_chunks_and_reads_cut(
        tmp_path_factory, before, after, cuts):
    """The line is longer than a chunk and arrives in arbitrary reads; the secret never survives a cut."""
    data = before + SECRET + after.replace(b"\n", b"y") + b"\n"
    pieces, pos = [], 0
    for size in cuts:
        pieces.append(data[pos : pos + size])
        pos += size
    pieces.append(data[pos:])
    tmp = tmp_path_factory.mktemp("sink")
    lines, _ = asyncio.run(feed(tmp, pieces, secrets=[SECRET.decode()]))
    assert rebuild(lines) == data[:-1].replace(SECRET, b"***")
    assert all(b"\n" not in ln.content for ln in lines)
