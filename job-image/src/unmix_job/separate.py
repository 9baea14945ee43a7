"""The engine seam: a Separator is loaded once, then keeps the speech of any number of decoded files.

Two engines, chosen by MODEL_NAME (models.py): Demucs (`htdemucs`, its vocals stem, GPU or CPU;
demucs_engine.py) and DeepFilterNet3 (`dfn3`, speech enhancement, CPU; deepfilternet3_engine.py).
Each declares the format it works in (rate, channels), so the input is decoded straight to it.
An engine's module is imported only when it is chosen: torch is loaded for Demucs alone.
"""

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

import numpy as np
import soundfile as sf

from .config import DemucsParams
from .decode import DecodedAudio
from .logs import log
from .models import Model, check_installed


@dataclass(frozen=True)
class Separated:
    """The kept stem: a float WAV in the engine's format, as long as the decoded input."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    peak: float


class Separator(Protocol):
    sample_rate: int
    channels: int
    device: str  # "cpu" or "cuda", for the manifest
    device_name: str
    versions: dict[str, str]  # the packages that produced the result, for the manifest

    def separate(self, audio: DecodedAudio, dest: Path) -> Separated:
        """Write the speech of `audio` (decoded to this engine's format) to `dest`."""
        ...


def load_separator(model: Model, *, device: str, repo: Path | None, demucs: DemucsParams) -> Separator:
    """Load `model` once. `device`, `repo` and `demucs` concern Demucs only (DeepFilterNet3 runs on
    the CPU with the weights of its package)."""
    check_installed(model)
    if model.engine == "demucs":
        from .demucs_engine import DemucsSeparator

        return DemucsSeparator(model, repo, device, demucs)
    if device == "cuda":
        log(f"DEVICE=cuda ignored: {model.name} runs on the CPU")
    from .deepfilternet3_engine import DeepFilterNet3Separator

    return DeepFilterNet3Separator(model)


class StemWriter:
    """Writes a stem block by block as a float WAV, keeping its length and peak and logging progress."""

    def __init__(self, dest: Path, sample_rate: int, channels: int, total_frames: int) -> None:
        self.dest, self.sample_rate, self.channels = dest, sample_rate, channels
        self.total_frames = total_frames
        self.frames, self.peak = 0, 0.0

    def __enter__(self) -> "StemWriter":
        self._file = sf.SoundFile(
            self.dest, "w", samplerate=self.sample_rate, channels=self.channels, subtype="FLOAT"
        )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._file.close()

    def write(self, block: np.ndarray) -> None:
        """`block`: (frames, channels) float32, or (frames,) for mono."""
        self._file.write(block)
        self.frames += len(block)
        self.peak = max(self.peak, float(np.abs(block).max(initial=0.0)))
        log(f"separated {self.frames / self.sample_rate:.1f} of {self.total_frames / self.sample_rate:.1f} s")

    def result(self) -> Separated:
        return Separated(self.dest, self.sample_rate, self.channels, self.frames, self.peak)
