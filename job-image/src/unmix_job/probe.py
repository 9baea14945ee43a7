"""ffprobe: what is in the file, and refusing early what cannot be processed."""

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .exit_codes import BadInput, ExitCode
from .limits import MAX_VIDEO_FRAME_RATE, MAX_VIDEO_PIXELS
from .media_tool import MediaToolError, ffprobe


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
    width: int
    height: int


@dataclass(frozen=True)
class MediaInfo:
    container: str
    duration: float | None
    audio: AudioStream | None
    video: VideoStream | None


def probe(path: Path) -> MediaInfo:
    """Describe a media file; BadInput(UNDECODABLE_INPUT) when ffprobe cannot read it."""
    try:
        out = ffprobe(str(path))
    except MediaToolError as err:
        reason = (
            "the file is not in a container WhatsApp sends (a playlist, a manifest or another format)"
            if err.refused_format
            else "the file is not audio or video that can be read"
        )
        raise BadInput(ExitCode.UNDECODABLE_INPUT, reason) from None
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
        duration=_duration(data.get("format", {}), streams),
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
    video = info.video
    if video is not None and video.width * video.height > MAX_VIDEO_PIXELS:
        raise BadInput(
            ExitCode.VIDEO_TOO_LARGE,
            f"the video is {video.width}x{video.height}, over the limit of {MAX_VIDEO_PIXELS} pixels",
        )
    if video is not None and video.frame_rate is not None and video.frame_rate > MAX_VIDEO_FRAME_RATE:
        raise BadInput(
            ExitCode.VIDEO_TOO_LARGE,
            f"the video has {video.frame_rate:.0f} frames per second; the limit is {MAX_VIDEO_FRAME_RATE}",
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
        width=int(stream.get("width") or 0),
        height=int(stream.get("height") or 0),
    )


def _duration(fmt: dict, streams: list[dict]) -> float | None:
    """The longest of the container's and the streams' durations: a short container duration must
    not hide an hours-long video stream."""
    durations = [d for d in (_float(fmt.get("duration")), *(_float(s.get("duration")) for s in streams)) if d]
    return max(durations, default=None)


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
