"""ffprobe: what is in the file, and refusing early what cannot be processed."""

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .exit_codes import BadInput, ExitCode
from .media_tool import MediaToolError, run


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class VideoStream:
    index: int
    codec: str
    pix_fmt: str
    profile: str
    frame_rate: float | None


@dataclass(frozen=True)
class MediaInfo:
    container: str
    duration: float | None
    audio: AudioStream | None
    video: VideoStream | None


def probe(path: Path) -> MediaInfo:
    """Describe a media file; BadInput(UNDECODABLE_INPUT) when ffprobe cannot read it."""
    try:
        out = run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)])
    except MediaToolError:
        raise BadInput(
            ExitCode.UNDECODABLE_INPUT, "the file is not audio or video that can be read"
        ) from None
    data = json.loads(out)
    streams = data.get("streams", [])
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    # Cover art shows up as a one-frame "video" stream: not a video.
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
        ),
        None,
    )
    return MediaInfo(
        container=data.get("format", {}).get("format_name", ""),
        duration=_float(data.get("format", {}).get("duration")) or _float((audio or {}).get("duration")),
        audio=_audio(audio) if audio else None,
        video=_video(video) if video else None,
    )


def check_input(info: MediaInfo, max_duration: float) -> AudioStream:
    """Refuse inputs that cannot be processed, before any decoding; return the audio stream to use."""
    if info.audio is None:
        raise BadInput(ExitCode.NO_AUDIO_STREAM, "the file has no sound track")
    if info.audio.codec in ("", "none") or info.audio.sample_rate <= 0:
        raise BadInput(ExitCode.UNDECODABLE_INPUT, "the sound track is in a format that cannot be decoded")
    if info.duration is not None and info.duration > max_duration:
        raise BadInput(
            ExitCode.INPUT_TOO_LONG,
            f"the file lasts {info.duration:.0f} s; the limit is {max_duration:.0f} s",
        )
    return info.audio


def _audio(stream: dict) -> AudioStream:
    return AudioStream(
        index=int(stream["index"]),
        codec=stream.get("codec_name", ""),
        sample_rate=int(stream.get("sample_rate") or 0),
        channels=int(stream.get("channels") or 0),
    )


def _video(stream: dict) -> VideoStream:
    rate = stream.get("avg_frame_rate") or stream.get("r_frame_rate") or "0/0"
    num, _, den = rate.partition("/")
    frame_rate = float(Fraction(int(num), int(den))) if den not in ("", "0") and int(num) > 0 else None
    return VideoStream(
        index=int(stream["index"]),
        codec=stream.get("codec_name", ""),
        pix_fmt=stream.get("pix_fmt", ""),
        profile=stream.get("profile", ""),
        frame_rate=frame_rate,
    )


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
