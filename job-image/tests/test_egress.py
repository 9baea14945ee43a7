"""P8: the audio never leaves — the job talks to the object store and to nothing else.

The cluster's half of the promise is the chart's NetworkPolicy (job pods may reach only DNS and the
object store; e2e/test/chart.test.ts). This is the job's half, checked here without a cluster: the
job runs with a `sitecustomize` that records, through Python's audit hooks, every name it resolves,
every socket it connects and every program it starts. Everything the job does goes through those
(urllib for the store; ffmpeg and ffprobe as subprocesses), so an extra connection (a model
download, an external API, a URL handed to ffmpeg) shows up in the record.
"""

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import Media
from unmix_job.models import MODELS

RECORDER = """
import json, os, sys

_log = open(os.environ["EGRESS_LOG"], "a", buffering=1)

def _hook(event, args):
    if event == "socket.getaddrinfo":
        _log.write(json.dumps({"resolve": str(args[0])}) + "\\n")
    elif event == "socket.connect":
        address = args[1]
        where = list(address) if isinstance(address, tuple) else str(address)
        _log.write(json.dumps({"connect": where}) + "\\n")
    elif event == "subprocess.Popen":
        _log.write(json.dumps({"run": [str(a) for a in (args[1] or [])]}) + "\\n")

sys.addaudithook(_hook)
"""


@pytest.mark.parametrize("model", list(MODELS))
def test_P8_the_job_connects_to_the_object_store_and_nothing_else(
    run_job, media: Media, tmp_path: Path, model: str
) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(RECORDER)
    log = tmp_path / "egress.jsonl"
    source_dir = Path(__file__).resolve().parents[1] / "src"

    run = run_job(
        media.voice_note(4.0),
        "audio",
        "ogg-opus",
        "audio/ogg; codecs=opus",
        MODEL_NAME=model,
        PYTHONPATH=f"{hooks}:{source_dir}",
        EGRESS_LOG=str(log),
    )
    assert run.code == 0, run.stdout + run.stderr

    records = [json.loads(line) for line in log.read_text().splitlines()]
    store = urlsplit(run.store.base)
    connects = [r["connect"] for r in records if "connect" in r]
    # the record works: it saw the job's own downloads and uploads
    assert len(connects) >= 3, records
    assert all(c[:2] == [store.hostname, store.port] for c in connects), connects
    assert {r["resolve"] for r in records if "resolve" in r} <= {store.hostname}
    runs = [r["run"] for r in records if "run" in r]
    assert runs, "ffprobe and ffmpeg are run"
    # the media tools get local files only: no URL for them to fetch or send to
    assert not [arg for argv in runs for arg in argv if "://" in arg], runs
    # and the store saw only the job's own three objects
    assert {key for _, key in run.store.requests} == {"input", "output", "manifest"}
