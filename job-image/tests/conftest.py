"""Fixtures: a tiny Demucs model in a local repo, generated media, and a presigned-URL-like store.

Everything runs for real: ffmpeg, espeak-ng, Demucs's own classes and loader, and the
`unmix-job` command in a subprocess talking HTTP to a local server.
"""

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from unmix_job.tiny_model import write_tiny_repo

SR = 44_100


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Named htdemucs so the job runs with its production MODEL_NAME default.
    return write_tiny_repo(tmp_path_factory.mktemp("models"))


# ---------------------------------------------------------------- media


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def stream(info: dict, kind: str) -> dict:
    return next(s for s in info["streams"] if s["codec_type"] == kind)


def packets_md5(path: Path, selector: str) -> str:
    """MD5 of a stream's packets, copied without decoding: equal means bit-identical."""
    out = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-map",
            selector,
            "-c",
            "copy",
            "-f",
            "md5",
            "-",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.strip()


def decoded_seconds(path: Path) -> float:
    """Length of the first audio stream as decoded (encoder padding removed), at its own rate."""
    rate = int(stream(ffprobe(path), "audio")["sample_rate"])
    pcm = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-f",
            "f32le",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return len(pcm) / 4 / rate


def chords(seconds: float, sr: int = SR) -> np.ndarray:
    """A I-V-vi-IV progression of sine chords with a soft attack: music, stereo float32."""
    t = np.arange(int(seconds * sr)) / sr
    roots = [261.63, 392.00, 440.00, 349.23]  # C, G, A, F
    out = np.zeros_like(t)
    for i, root in enumerate(roots * int(seconds // 2 + 1)):
        start, end = i * 2.0, min((i + 1) * 2.0, seconds)
        if start >= seconds:
            break
        mask = (t >= start) & (t < end)
        local = t[mask] - start
        envelope = np.minimum(local / 0.05, 1.0) * np.exp(-local * 0.7)
        third = 1.26 if i % 4 in (0, 1, 3) else 1.19  # major or minor third
        for ratio in (1.0, third, 1.5, 2.0):
            out[mask] += np.sin(2 * np.pi * root * ratio * local) * envelope
    out *= 0.15
    return np.stack([out, np.roll(out, 200)], axis=1).astype(np.float32)


@dataclass
class Media:
    root: Path
    _cache: dict[str, Path] = field(default_factory=dict)

    def _make(self, name: str, build) -> Path:
        if name not in self._cache:
            path = self.root / name
            build(path)
            self._cache[name] = path
        return self._cache[name]

    def speech(self) -> Path:
        text = "Hello, this is a voice note. The music behind me should go away, and my voice should stay."

        def build(path: Path) -> None:
            subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True)

        return self._make("speech.wav", build)

    def mix(self, seconds: float) -> Path:
        """Speech (looped to `seconds`) over chords, 44.1 kHz stereo WAV."""

        def build(path: Path) -> None:
            speech_wav = self.root / f"speech-{seconds}.wav"
            ffmpeg("-stream_loop", "-1", "-i", str(self.speech()), "-t", str(seconds),
                   "-ar", str(SR), "-ac", "1", "-c:a", "pcm_f32le", str(speech_wav))  # fmt: skip
            voice, _ = sf.read(speech_wav, dtype="float32", always_2d=True)
            music = chords(seconds)[: len(voice)]
            sf.write(path, voice[: len(music)] * 0.8 + music, SR, subtype="FLOAT")

        return self._make(f"mix-{seconds}.wav", build)

    def voice_note(self, seconds: float = 6.0) -> Path:
        def build(path: Path) -> None:
            ffmpeg(
                "-i",
                str(self.mix(seconds)),
                "-ac",
                "1",
                "-c:a",
                "libopus",
                "-b:a",
                "32k",
                "-f",
                "ogg",
                str(path),
            )

        return self._make(f"note-{seconds}.ogg", build)

    def mp3(self) -> Path:
        return self._make(
            "song.mp3",
            lambda p: ffmpeg("-i", str(self.mix(5.0)), "-c:a", "libmp3lame", "-b:a", "128k", str(p)),
        )

    def m4a(self) -> Path:
        return self._make(
            "song.m4a", lambda p: ffmpeg("-i", str(self.mix(5.0)), "-c:a", "aac", "-b:a", "96k", str(p))
        )

    def video(self, codec: str = "h264") -> Path:
        """testsrc video + the mix: H.264 in MP4 (what phones send), or HEVC in MOV (an iPhone's)."""
        encoders = {
            "h264": ["-c:v", "libx264", "-profile:v", "high", "-pix_fmt", "yuv420p", "-preset", "ultrafast"],
            "hevc": ["-c:v", "libx265", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-tag:v", "hvc1",
                     "-x265-params", "log-level=error"],
        }  # fmt: skip
        ext = "mp4" if codec == "h264" else "mov"

        def build(path: Path) -> None:
            ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=4", "-i", str(self.mix(4.0)),
                   *encoders[codec], "-c:a", "aac", "-b:a", "96k", "-shortest", str(path))  # fmt: skip

        return self._make(f"video-{codec}.{ext}", build)

    def video_without_audio(self) -> Path:
        return self._make(
            "mute.mp4",
            lambda p: ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=2",
                             "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(p)),
        )  # fmt: skip

    def silence(self) -> Path:
        return self._make(
            "silence.ogg",
            lambda p: ffmpeg(
                "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "3", "-c:a", "libopus", str(p)
            ),
        )

    def corrupt(self) -> Path:
        return self._make("corrupt.ogg", lambda p: p.write_bytes(np.random.default_rng(7).bytes(40_000)))


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return Media(tmp_path_factory.mktemp("media"))


# ---------------------------------------------------------------- presigned-URL-like store


@dataclass
class Store:
    """GET serves `objects`; PUT records into `puts`. `fail[key]` lists HTTP statuses to answer the
    next requests for that key with, one each."""

    objects: dict[str, bytes] = field(default_factory=dict)
    puts: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    fail: dict[str, list[int]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    base: str = ""

    def url(self, key: str) -> str:
        # Presigned URLs carry their signature in the query; the server ignores it, the job must too.
        return f"{self.base}/{key}?X-Amz-Expires=900&X-Amz-Signature=0123abcd"


@pytest.fixture
def store() -> Iterator[Store]:
    state = Store()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _key(self) -> str:
            return self.path.split("?", 1)[0].lstrip("/")

        def do_GET(self) -> None:
            key = self._key()
            state.requests.append(("GET", key))
            if state.fail.get(key):
                self.send_error(state.fail[key].pop(0))
                return
            body = state.objects.get(key)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            key = self._key()
            state.requests.append(("PUT", key))
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state.fail.get(key):
                self.send_error(state.fail[key].pop(0))
                return
            state.puts[key] = (self.headers["Content-Type"], body)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------- running the job


@dataclass
class JobRun:
    code: int
    stdout: str
    stderr: str
    termination: str | None
    store: Store
    work_dir: Path
    # What the job wrote outside WORK_DIR: its cwd's content, and HOME/TMPDIR/XDG_CACHE_HOME if it
    # created them (they point at paths that do not exist; as root it could create them).
    stray_writes: list[Path]

    @property
    def output(self) -> bytes:
        return self.store.puts["output"][1]

    @property
    def manifest(self) -> dict:
        return json.loads(self.store.puts["manifest"][1])


@pytest.fixture
def run_job(store: Store, model_repo: Path, tmp_path: Path):
    """Run the `unmix-job` command as the Job would, against the local store."""

    def run(source: Path, kind: str, output_format: str, mime: str = "", **env: str) -> JobRun:
        store.objects["input"] = source.read_bytes()
        work_dir = tmp_path / "work"
        work_dir.mkdir(exist_ok=True)
        cwd = tmp_path / "cwd"
        cwd.mkdir(exist_ok=True)
        elsewhere = [tmp_path / "home", tmp_path / "tmp", tmp_path / "cache"]
        termination = tmp_path / "termination-log"
        full_env = {
            "PATH": os.environ["PATH"],
            "HOME": str(elsewhere[0]),
            "TMPDIR": str(elsewhere[1]),
            "XDG_CACHE_HOME": str(elsewhere[2]),
            "INPUT_URL": store.url("input"),
            "OUTPUT_URL": store.url("output"),
            "MANIFEST_URL": store.url("manifest"),
            "INPUT_KIND": kind,
            "INPUT_MIME_TYPE": mime,
            "OUTPUT_FORMAT": output_format,
            "MODEL_REPO": str(model_repo),
            "DEVICE": "cpu",
            "WORK_DIR": str(work_dir),
            "TERMINATION_LOG": str(termination),
            "TRACEPARENT": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            # A checkout whose code is on PYTHONPATH (the venv installed another one) runs its own.
            **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
            **env,
        }
        command = Path(sys.executable).parent / "unmix-job"
        proc = subprocess.run(
            [str(command)], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=300
        )
        print(proc.stdout, proc.stderr)
        return JobRun(
            code=proc.returncode,
            stdout=proc.stdout,
            stderr=proc.stderr,
            termination=termination.read_text() if termination.exists() else None,
            store=store,
            work_dir=work_dir,
            stray_writes=[*cwd.iterdir(), *(path for path in elsewhere if path.exists())],
        )

    return run
