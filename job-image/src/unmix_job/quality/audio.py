"""Reading and writing audio for the quality checks: everything through ffmpeg, at 48 kHz."""

import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from ..media_tool import MediaToolError, ffmpeg
from ..probe import probe

RATE = 48_000  # WhatsApp voice notes are 48 kHz Opus, and DeepFilterNet3 works at 48 kHz


def read(path: Path) -> np.ndarray:
    """Any media ffmpeg decodes → (frames, channels) float32 at RATE, in its own channel count."""
    info = probe(path)
    channels = info.audio.channels if info.audio else 0
    if channels not in (1, 2):
        raise ValueError(f"{path.name}: expected a mono or stereo sound track, found {channels} channels")
    pcm = _run_ffmpeg("-loglevel", "error", "-i", str(path), "-map", "0:a:0", "-ar", str(RATE),
                      "-f", "f32le", "-").stdout  # fmt: skip
    return np.frombuffer(pcm, dtype="<f4").reshape(-1, channels).copy()


def write_wav(path: Path, audio: np.ndarray) -> Path:
    sf.write(path, audio, RATE, subtype="FLOAT")
    return path


def encode_voice_note(wav: Path, dest: Path) -> Path:
    """What WhatsApp sends for a voice note: Ogg/Opus, mono, 48 kHz, ~32 kbps, voip mode."""
    ffmpeg("-i", str(wav), "-ac", "1", "-ar", str(RATE), "-c:a", "libopus", "-b:a", "32k",
           "-application", "voip", "-f", "ogg", str(dest))  # fmt: skip
    return dest


def encode_audio_file(wav: Path, dest: Path) -> Path:
    """An audio file a user shares: AAC-LC in M4A, 128 kbps, its own channels."""
    ffmpeg("-i", str(wav), "-c:a", "aac", "-b:a", "128k", "-f", "ipod", str(dest))
    return dest


_INTEGRATED = re.compile(r"Integrated loudness:\s+I:\s+(-?[\d.]+|-inf) LUFS")


def loudness_lufs(audio: np.ndarray) -> float:
    """Integrated loudness (EBU R128, ffmpeg's ebur128 filter) of float audio at RATE."""
    with tempfile.TemporaryDirectory(prefix="unmix-loudness-") as tmp:
        wav = write_wav(Path(tmp) / "audio.wav", audio)
        # The summary is printed on stderr at info level; per-frame lines only at verbose.
        log = _run_ffmpeg("-nostats", "-i", str(wav), "-af", "ebur128=framelog=verbose",
                          "-f", "null", "-").stderr.decode(errors="replace")  # fmt: skip
    match = _INTEGRATED.search(log)
    if not match:
        raise ValueError("ffmpeg's ebur128 printed no integrated loudness")
    return float(match.group(1))


def _run_ffmpeg(*args: str) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", *args], capture_output=True, check=False)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        raise MediaToolError(f"ffmpeg exited with {proc.returncode}: {lines[-1]}")
    return proc
