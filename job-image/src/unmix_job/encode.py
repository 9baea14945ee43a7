"""Encoding the cleaned audio back to what the user sent, in a form WhatsApp accepts.

- ogg-opus: a voice note: Ogg/Opus mono, at or under 512 KB when the duration allows (WhatsApp
  shows the play button only up to that size), so the bitrate is chosen from the duration.
- mp3: MP3. m4a: AAC in M4A. Both at the stem's rate (the engine's: 44.1 kHz for Demucs, 48 kHz
  for DeepFilterNet3), so the audio is not resampled a second time.
- mp4: the original video stream copied bit for bit, plus the cleaned audio as AAC. WhatsApp
  plays only H.264 (8-bit 4:2:0) + AAC in MP4, so any other video is re-encoded to H.264 Main.
Metadata of the input (titles, locations) is not carried over.
"""

from dataclasses import dataclass
from pathlib import Path

from .config import OutputFormat
from .limits import MAX_VIDEO_PIXELS
from .media_tool import ffmpeg, input_file
from .probe import MediaInfo, VideoStream
from .separate import Separated

VOICE_NOTE_MAX_BYTES = 512_000  # "512 KB", read as the smaller of kB and KiB
OPUS_MAX_BPS = 32_000  # wideband speech is transparent well below this
OPUS_MIN_BPS = 8_000  # under this speech gets hard to understand; longer notes go over 512 KB
# Constant bitrate: libopus's VBR overshot its target by 20-80 % on speech over music, CBR by
# the framing alone: Ogg pages and packet lacing, measured at ~0.6 kbps for 20 ms packets.
FRAMING_BPS = 1_000
SAFETY = 0.97

MIME_TYPES: dict[OutputFormat, str] = {
    "ogg-opus": "audio/ogg",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "mp4": "video/mp4",
}
PLAYABLE_PIX_FMTS = ("yuv420p", "yuvj420p")
# A re-encoded video comes back at most this large and fast (WhatsApp's own HD is 1080p).
REENCODE_MAX_SIDE = 1920
REENCODE_MAX_FPS = 30


@dataclass(frozen=True)
class Encoded:
    path: Path
    mime_type: str
    audio_bitrate: int
    video_copied: bool | None  # None: no video in the output


def voice_note_bitrate(duration: float) -> int:
    """The highest Opus bitrate (bps, whole kbps) that keeps a note of this length under 512 KB."""
    budget = VOICE_NOTE_MAX_BYTES * 8 * SAFETY / max(duration, 1.0) - FRAMING_BPS
    return int(max(OPUS_MIN_BPS, min(OPUS_MAX_BPS, budget)) // 1000 * 1000)


def video_needs_reencode(video: VideoStream) -> bool:
    return video.codec != "h264" or video.pix_fmt not in PLAYABLE_PIX_FMTS


def encode(
    fmt: OutputFormat,
    stem: Separated,
    duration: float,
    source: Path,
    info: MediaInfo,
    keep_video: bool,
    dest_dir: Path,
) -> Encoded:
    """Encode the stem; for mp4 with keep_video, mux it with the source's video stream."""
    mono = fmt == "ogg-opus" or (info.audio is not None and info.audio.channels == 1)
    filters = []
    if stem.peak > 0.99:
        # Demucs's "rescale" clip mode: lower the whole stem rather than clip its peaks.
        filters.append(f"volume={0.99 / stem.peak:.6f}")
    if mono and stem.channels == 2:
        # A plain average: ffmpeg's default stereo-to-mono matrix would add 3 dB.
        filters.append("pan=mono|c0=0.5*c0+0.5*c1")
    if not mono and stem.channels == 1:
        # A mono stem (DeepFilterNet3) for a stereo source: the same signal in both channels, at
        # full level (ffmpeg's default mono-to-stereo matrix would lower it by 3 dB).
        filters.append("pan=stereo|c0=c0|c1=c0")
    audio_filter = ["-af", ",".join(filters)] if filters else []
    mime = MIME_TYPES[fmt]

    if fmt == "ogg-opus":
        bitrate = voice_note_bitrate(duration)
        dest = dest_dir / "output.ogg"
        ffmpeg(
            *input_file(str(stem.path)), *audio_filter, "-map_metadata", "-1",
            "-c:a", "libopus", "-b:a", str(bitrate), "-vbr", "off", "-application", "voip",
            "-ar", "48000", "-f", "ogg", str(dest),
        )  # fmt: skip
        return Encoded(dest, mime, bitrate, None)

    bitrate = 64_000 if mono else 128_000
    if fmt == "mp3":
        dest = dest_dir / "output.mp3"
        ffmpeg(
            *input_file(str(stem.path)), *audio_filter, "-map_metadata", "-1",
            "-c:a", "libmp3lame", "-b:a", str(bitrate), "-ar", str(stem.sample_rate), "-f", "mp3", str(dest),
        )  # fmt: skip
        return Encoded(dest, mime, bitrate, None)

    aac = ["-c:a", "aac", "-b:a", str(bitrate), "-ar", str(stem.sample_rate)]
    if fmt == "m4a" or not keep_video or info.video is None:
        dest = dest_dir / ("output.m4a" if fmt == "m4a" else "output.mp4")
        ffmpeg(
            *input_file(str(stem.path)), *audio_filter, "-map_metadata", "-1", *aac,
            "-movflags", "+faststart", "-f", "ipod" if fmt == "m4a" else "mp4", str(dest),
        )  # fmt: skip
        return Encoded(dest, mime, bitrate, None)

    dest = dest_dir / "output.mp4"
    copy = not video_needs_reencode(info.video)
    # A re-encode decodes every frame: the decoder refuses frames over the probe's pixel limit (a
    # stream can change size midway), and the picture comes back at most REENCODE_MAX_SIDE on its
    # longer side and REENCODE_MAX_FPS: what a phone shows, at a bounded CPU cost.
    decoder_cap = [] if copy else ["-max_pixels", str(MAX_VIDEO_PIXELS)]
    video_codec = (
        ["-c:v", "copy"]
        if copy
        else [
            "-c:v", "libx264", "-profile:v", "main", "-pix_fmt", "yuv420p", "-preset", "veryfast",
            "-crf", "23", "-vf", _reencode_filter(info.video),
        ]
    )  # fmt: skip
    ffmpeg(
        *decoder_cap, *input_file(str(source)), *input_file(str(stem.path)),
        "-map", f"0:{info.video.index}", "-map", "1:a:0", "-map_metadata", "-1",
        # The reply lasts as long as the audio: a video stream that runs on for hours ends here.
        "-t", f"{duration:.3f}",
        *video_codec, *audio_filter, *aac, "-movflags", "+faststart", "-f", "mp4", str(dest),
    )  # fmt: skip
    return Encoded(dest, mime, bitrate, copy)


def _reencode_filter(video: VideoStream) -> str:
    side = REENCODE_MAX_SIDE
    scale = (
        f"scale='min(iw,{side})':'min(ih,{side})':force_original_aspect_ratio=decrease,"
        "scale=trunc(iw/2)*2:trunc(ih/2)*2"
    )
    if video.frame_rate is None or video.frame_rate > REENCODE_MAX_FPS:
        return f"{scale},fps={REENCODE_MAX_FPS}"
    return scale
