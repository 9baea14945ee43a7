"""Decoding to the engine's format (ffmpeg to a float WAV at its rate and channel count: 44.1 kHz
stereo for Demucs, 48 kHz mono for DeepFilterNet3), measured with soundfile.

The engine's own rate avoids a second resampling inside the engine; Opus voice notes are 48 kHz
already. torchaudio stays off the I/O path on purpose (its backends changed under Demucs several
times).
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .exit_codes import BadInput, ExitCode
from .media_tool import DECODE_TIMEOUT_SECONDS, MediaToolError, ffmpeg, input_file
from .probe import AudioStream

# Peak level at or under which a recording counts as silence: nothing to separate. Any real voice
# note peaks far above it; dither and idle microphone noise stay below it.
SILENCE_PEAK_DBFS = -60.0
BLOCK_FRAMES = 1 << 20


@dataclass(frozen=True)
class DecodedAudio:
    path: Path
    sample_rate: int
    channels: int
    frames: int
    peak: float
    # Mean and standard deviation of the mono mix over the whole file: Demucs normalises with them.
    mean: float
    std: float

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def decode(
    source: Path, stream: AudioStream, dest: Path, max_duration: float, sample_rate: int, channels: int
) -> DecodedAudio:
    # To mono (DeepFilterNet3) as a plain average, like the output rules' mono: ffmpeg's default
    # matrix would add 3 dB to a stereo source.
    downmix = ["-rematrix_maxval", "1"] if channels == 1 else []
    try:
        ffmpeg(
            *input_file(str(source)),
            "-map", f"0:{stream.index}",
            # One second past the limit is enough to tell a file that lied about its duration.
            "-t", f"{max_duration + 1:.3f}",
            "-ac", str(channels), "-ar", str(sample_rate), *downmix,
            "-c:a", "pcm_f32le", "-f", "wav", str(dest),
            timeout=DECODE_TIMEOUT_SECONDS,
        )  # fmt: skip
    except MediaToolError:
        raise BadInput(ExitCode.UNDECODABLE_INPUT, "the sound track could not be decoded") from None
    audio = measure(dest)
    if audio.frames == 0:
        raise BadInput(ExitCode.UNDECODABLE_INPUT, "the sound track holds no audio that can be decoded")
    if audio.duration > max_duration:
        raise BadInput(ExitCode.INPUT_TOO_LONG, f"the file lasts more than the limit of {max_duration:.0f} s")
    if audio.peak <= 10 ** (SILENCE_PEAK_DBFS / 20):
        raise BadInput(ExitCode.SILENT_INPUT, "the recording is silent: there is nothing to separate")
    return audio


def measure(path: Path) -> DecodedAudio:
    """Rate, channels, frames, peak and mono mean/std of a float WAV, streamed so long files stay
    cheap in memory."""
    frames, peak, total, total_sq = 0, 0.0, 0.0, 0.0
    with sf.SoundFile(path) as wav:
        sample_rate, channels = wav.samplerate, wav.channels
        for block in wav.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True):
            mono = block.mean(axis=1, dtype=np.float64)
            frames += len(block)
            peak = max(peak, float(np.abs(block).max(initial=0.0)))
            total += float(mono.sum())
            total_sq += float(np.square(mono).sum())
    mean = total / frames if frames else 0.0
    variance = max(total_sq / frames - mean * mean, 0.0) if frames else 0.0
    return DecodedAudio(
        path=path,
        sample_rate=sample_rate,
        channels=channels,
        frames=frames,
        peak=peak,
        mean=mean,
        std=math.sqrt(variance),
    )
