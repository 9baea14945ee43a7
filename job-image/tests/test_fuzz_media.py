"""A fuzzer of what the job reads from the user: real voice notes, songs and videos, truncated,
with bytes flipped, inserted or zeroed, spliced together, or plain random bytes, through the job's
own probe → check → decode. Every input must end in success or in a defined failure (BadInput with
an exit code of the contract), never another exception; a hang is cut by the tools' own timeouts,
which end as a defined failure too.

`make check` / pytest run a bounded, deterministic set (FUZZ_EXAMPLES, default 40); `make fuzz-media`
runs a longer, random campaign (FUZZ_EXAMPLES=2000 FUZZ_RANDOM=1).
"""

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import Media
from unmix_job.decode import decode
from unmix_job.exit_codes import BadInput, ExitCode
from unmix_job.probe import check_input, probe

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
MAX_DURATION = 30.0


def seeds(media: Media) -> list[bytes]:
    return [
        path.read_bytes() for path in (media.voice_note(3.0), media.mp3(), media.m4a(), media.video("h264"))
    ]


def mutate(data: st.DataObject, seed: bytes) -> bytes:
    out = bytearray(seed)

    def position(size: int) -> int:
        # Half the time within the first 512 bytes, where the headers are.
        return data.draw(
            st.one_of(st.integers(0, max(min(512, size) - 1, 0)), st.integers(0, max(size - 1, 0)))
        )

    for _ in range(data.draw(st.integers(1, 6), label="mutations")):
        op = data.draw(st.sampled_from(["truncate", "flip", "insert", "zero", "splice"]), label="op")
        at = position(len(out))
        if op == "truncate":
            del out[at:]
        elif op == "flip" and out:
            out[at] ^= data.draw(st.integers(1, 255))
        elif op == "insert":
            out[at:at] = data.draw(st.binary(min_size=1, max_size=64))
        elif op == "zero":
            length = data.draw(st.integers(1, 4096))
            out[at : at + length] = bytes(len(out[at : at + length]))
        elif op == "splice":
            out[at:] = seed[data.draw(st.integers(0, len(seed) - 1)) :]
    return bytes(out)


def outcome(source: Path, work: Path) -> int:
    """The job's reading of one input: its exit code (OK, or the BadInput's)."""
    try:
        stream = check_input(probe(source), MAX_DURATION)
        audio = decode(source, stream, work / "mix.wav", MAX_DURATION, 48_000, 1)
    except BadInput as err:
        assert err.reason, "a failure needs a reason for the termination log"
        return err.code
    assert 0 < audio.duration <= MAX_DURATION + 0.1
    return ExitCode.OK


@settings(
    max_examples=EXAMPLES,
    derandomize=os.environ.get("FUZZ_RANDOM") != "1",
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_any_mangled_media_ends_in_success_or_a_defined_failure(media: Media, data: st.DataObject) -> None:
    corpus = seeds(media)
    kind = data.draw(st.sampled_from(["mutated", "random"]), label="kind")
    if kind == "random":
        body = data.draw(st.binary(min_size=0, max_size=4096), label="bytes")
    else:
        body = mutate(data, data.draw(st.sampled_from(corpus), label="seed"))
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "input"
        source.write_bytes(body)
        # Any exception but BadInput fails the test, with the input hypothesis shrank it to.
        code = outcome(source, Path(work))
        assert code in set(ExitCode)
        event(f"{kind}: {ExitCode(code).name}")
