"""Every way a job can fail: the exit code the controller relies on, a one-line reason in the
termination log, and nothing uploaded."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import JobRun, Media
from unmix_job.exit_codes import ExitCode

CONTRACT = {
    "OK": 0,
    "UNDECODABLE_INPUT": 10,
    "NO_AUDIO_STREAM": 11,
    "INPUT_TOO_LONG": 12,
    "OUTPUT_TOO_LARGE": 13,
    "SILENT_INPUT": 14,
    "VIDEO_TOO_LARGE": 15,
}


def test_exit_code_table_is_printed_as_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "unmix_job.exit_codes"], check=True, capture_output=True, text=True
    ).stdout
    assert json.loads(out) == CONTRACT


def check_failed(run: JobRun, code: int) -> None:
    assert run.code == code, run.stdout
    assert run.termination is not None
    assert run.termination.endswith("\n") and run.termination.count("\n") == 1
    assert len(run.termination.strip()) > 10
    assert not [r for r in run.store.requests if r[0] == "PUT"], "a failed job uploaded something"
    assert list(run.work_dir.iterdir()) == []
    assert run.stray_writes == []


@pytest.mark.parametrize(
    ("fixture", "kind", "fmt", "env", "code"),
    [
        ("corrupt", "audio", "ogg-opus", {}, ExitCode.UNDECODABLE_INPUT),
        ("video_without_audio", "video", "mp4", {}, ExitCode.NO_AUDIO_STREAM),
        ("voice_note", "audio", "ogg-opus", {"MAX_DURATION_SECONDS": "4"}, ExitCode.INPUT_TOO_LONG),
        ("voice_note", "audio", "ogg-opus", {"MAX_INPUT_BYTES": "1000"}, ExitCode.INPUT_TOO_LONG),
        ("silence", "audio", "ogg-opus", {}, ExitCode.SILENT_INPUT),
        ("mp3", "audio", "mp3", {"MAX_OUTPUT_BYTES": "2000"}, ExitCode.OUTPUT_TOO_LARGE),
    ],
    ids=["corrupt", "no-audio", "too-long", "too-big", "silent", "output-too-large"],
)
def test_bad_input(
    run_job, media: Media, fixture: str, kind: str, fmt: str, env: dict, code: ExitCode
) -> None:
    run = run_job(getattr(media, fixture)(), kind, fmt, **env)
    check_failed(run, code)


def test_truncated_file_is_undecodable(run_job, media: Media, tmp_path) -> None:
    # The first 300 bytes of a real Ogg file: its header parses, its audio does not.
    head = tmp_path / "head.ogg"
    head.write_bytes(media.voice_note().read_bytes()[:300])
    check_failed(run_job(head, "audio", "ogg-opus"), ExitCode.UNDECODABLE_INPUT)


def test_download_failure_is_transient(run_job, store, media: Media) -> None:
    store.fail["input"] = [503]
    run = run_job(media.voice_note(), "audio", "ogg-opus")
    check_failed(run, 1)
    assert "HTTP 503" in run.termination
    assert "X-Amz-Signature" not in run.stdout + run.termination, "a presigned URL leaked into the logs"


def test_upload_is_retried(run_job, store, media: Media) -> None:
    store.fail["output"] = [503]
    run = run_job(media.voice_note(), "audio", "ogg-opus")
    assert run.code == 0, run.stdout
    assert "retrying" in run.stdout
    assert run.manifest["sizeBytes"] == len(run.output)


def test_upload_failure_is_transient_and_writes_no_manifest(run_job, store, media: Media) -> None:
    store.fail["output"] = [503, 503, 503]
    run = run_job(media.voice_note(), "audio", "ogg-opus")
    assert run.code == 1
    assert "upload of the result failed: HTTP 503" in run.termination
    assert "manifest" not in run.store.puts and "output" not in run.store.puts
    assert list(run.work_dir.iterdir()) == []


def test_misconfiguration_is_reported(run_job, media: Media) -> None:
    run = run_job(media.voice_note(), "audio", "wav")
    check_failed(run, 1)
    assert run.termination.startswith("job misconfigured: OUTPUT_FORMAT must be one of")


def test_an_unknown_model_is_a_misconfiguration(run_job, media: Media) -> None:
    run = run_job(media.voice_note(), "audio", "ogg-opus", MODEL_NAME="htdemucs_ft")
    check_failed(run, 1)
    assert run.termination.startswith("job misconfigured: MODEL_NAME must be one of htdemucs, dfn3")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_a_gpu_is_transient(run_job, media: Media) -> None:
    run = run_job(media.voice_note(), "audio", "ogg-opus", DEVICE="cuda")
    check_failed(run, 1)
    assert "no CUDA device" in run.termination
