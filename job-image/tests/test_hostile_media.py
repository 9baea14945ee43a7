"""Media that attacks the job: manifests and playlists that point ffmpeg elsewhere, and video that
would keep a pod busy for hours. Each ends in a specific failure (or a bounded result), with
nothing fetched, nothing read and nothing uploaded."""

import contextlib
import http.server
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import Media, ffmpeg, ffprobe, stream
from test_failures import check_failed
from unmix_job.encode import REENCODE_MAX_FPS, REENCODE_MAX_SIDE
from unmix_job.exit_codes import ExitCode
from unmix_job.limits import MAX_VIDEO_FRAME_RATE, MAX_VIDEO_PIXELS


@dataclass
class Listener:
    """A local HTTP server that counts every request made to it."""

    url: str = ""
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def listener() -> Iterator[Listener]:
    state = Listener()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}/segment.mp3"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class Canary:
    """A local file (a FIFO named like an MP3) that notices being opened: a writer thread blocks
    in open() until a reader comes, then hands it real MP3 bytes."""

    path: Path
    opened: threading.Event
    _done: threading.Event
    _thread: threading.Thread

    def close(self) -> None:
        self._done.set()
        if not self.opened.is_set():
            # Unblock the writer ourselves; it sees `_done` and does not count this open.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self._thread.join(5)
            os.close(fd)


@pytest.fixture
def canary(media: Media, tmp_path: Path) -> Iterator[Canary]:
    path = tmp_path / "canary.mp3"
    os.mkfifo(path)
    body = media.mp3().read_bytes()
    opened, done = threading.Event(), threading.Event()

    def write() -> None:
        with path.open("wb") as fifo:
            if done.is_set():
                return
            opened.set()
            with contextlib.suppress(BrokenPipeError):
                fifo.write(body)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    state = Canary(path, opened, done, thread)
    yield state
    state.close()


def hls(url: str) -> str:
    return f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\n{url}\n#EXT-X-ENDLIST\n"


def dash(url: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT5S" '
        'minBufferTime="PT1S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011"><Period>'
        '<AdaptationSet mimeType="audio/mpeg"><Representation id="a" bandwidth="128000" codecs="mp3">'
        f"<BaseURL>{url}</BaseURL></Representation></AdaptationSet></Period></MPD>\n"
    )


def concat(url: str) -> str:
    return f"ffconcat version 1.0\nfile '{url}'\n"


@pytest.mark.parametrize("manifest", [hls, dash, concat], ids=["hls", "dash", "concat"])
@pytest.mark.parametrize("target", ["listener", "file-url", "file-path"])
def test_a_manifest_or_playlist_is_refused_without_opening_what_it_names(
    run_job, listener: Listener, canary: Canary, tmp_path: Path, manifest, target: str
) -> None:
    # Extension-less, as the job stores its input: ffmpeg would recognise each by its content.
    url = {"listener": listener.url, "file-url": f"file://{canary.path}", "file-path": str(canary.path)}[
        target
    ]
    source = tmp_path / "voice-note"
    source.write_text(manifest(url))
    run = run_job(source, "audio", "ogg-opus", "audio/ogg")
    canary.close()
    check_failed(run, ExitCode.UNDECODABLE_INPUT)
    assert "not in a container WhatsApp sends" in run.termination
    assert listener.requests == []
    assert not canary.opened.is_set(), "the job opened a local file named by the manifest"


def video_with_sound(media: Media, dest: Path, video_source: str, *encoder: str) -> Path:
    """A lavfi video source muxed with the 6 s voice note's sound (AAC in MP4)."""
    ffmpeg("-f", "lavfi", "-i", video_source, "-i", str(media.voice_note()), "-map", "0:v", "-map", "1:a",
           *encoder, "-c:a", "aac", "-b:a", "64k", str(dest))  # fmt: skip
    return dest


@pytest.mark.parametrize(
    ("video_source", "what"),
    [
        # 8K: more pixels than the limit, in two frames (a few hundred KB).
        ("color=gray:size=7680x4320:rate=1:duration=2", "pixels"),
        # 240 frames per second.
        ("testsrc=size=160x120:rate=240:duration=2", "frames per second"),
    ],
    ids=["8k", "240fps"],
)
def test_video_over_the_picture_limits_is_refused_at_probe(
    run_job, media: Media, tmp_path: Path, video_source: str, what: str
) -> None:
    assert MAX_VIDEO_PIXELS < 7680 * 4320 and MAX_VIDEO_FRAME_RATE < 240
    source = video_with_sound(media, tmp_path / "big.mp4", video_source,
                              "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")  # fmt: skip
    run = run_job(source, "video", "mp4", "video/mp4")
    check_failed(run, ExitCode.VIDEO_TOO_LARGE)
    assert what in run.termination
    # Refused before the model was loaded or anything decoded.
    assert "input:" not in run.stdout


def test_a_long_sparse_4k_video_comes_back_as_long_as_its_sound_and_scaled_down(
    run_job, media: Media, tmp_path: Path
) -> None:
    # Five minutes of 4K (one frame every 10 s, so a few hundred KB) over 6 s of sound, in 4:4:4
    # (which WhatsApp cannot play, so the job re-encodes it): the reply must not carry on for five
    # minutes of video, nor keep 4K.
    sparse = "color=gray:size=3840x2160:rate=1/10:duration=300"
    source = video_with_sound(media, tmp_path / "sparse.mp4", sparse,
                              "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p")  # fmt: skip
    assert float(ffprobe(source)["format"]["duration"]) > 290
    run = run_job(source, "video", "mp4", "video/mp4")
    assert run.code == 0, run.stdout
    out = tmp_path / "out.mp4"
    out.write_bytes(run.output)
    info = ffprobe(out)
    video = stream(info, "video")
    # The sound's 6 s, plus at most the one 10 s frame showing when the sound ends.
    assert float(info["format"]["duration"]) <= 6.1 + 10
    assert max(video["width"], video["height"]) <= REENCODE_MAX_SIDE
    num, den = (int(x) for x in video["r_frame_rate"].split("/"))
    assert num / den <= REENCODE_MAX_FPS
