"""The Demucs engine (`htdemucs`): keep the vocals (speech) stem, in bounded memory whatever the
input's length. 44.1 kHz stereo, on the GPU when one is visible.

`apply_model(split=True)` already cuts a track into overlapping segments, but it holds the whole
track and all four stems at once (an hour of audio is ~25 GB). So the track is streamed through
it in windows of whole segment strides: a window starts on a multiple of the model's stride,
and only the part of it whose every covering segment lies fully inside the window is kept.
The kept parts tile the track, and each of their samples is computed from exactly the segments
and blend weights that a single `apply_model` call over the whole track would use: the result
equals unchunked Demucs (up to float rounding) while memory stays at one window.
"""

from pathlib import Path

import soundfile as sf
import torch
from demucs.apply import BagOfModels, apply_model
from demucs.pretrained import get_model

from .config import DemucsParams
from .decode import DecodedAudio
from .models import Model
from .separate import Separated, StemWriter

STEM = "vocals"
SAMPLE_RATE = 44_100
CHANNELS = 2


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("DEVICE=cuda but no CUDA device is visible to the container")
    return torch.device(requested)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


class DemucsSeparator:
    """A Demucs model loaded once; `separate` can then run on any number of files."""

    sample_rate = SAMPLE_RATE
    channels = CHANNELS

    def __init__(self, model: Model, repo: Path | None, device: str, params: DemucsParams) -> None:
        if repo is not None and not repo.is_dir():
            # demucs would sys.exit() from inside get_model; fail with a reason instead.
            raise RuntimeError(f"MODEL_REPO {repo} is not a directory")
        self.torch_device = resolve_device(device)
        self.device = self.torch_device.type
        self.device_name = device_name(self.torch_device)
        self.versions = {model.package: model.version, "torch": torch.__version__}
        demucs = get_model(model.name, repo=repo)
        if demucs.samplerate != SAMPLE_RATE or demucs.audio_channels != CHANNELS:
            raise RuntimeError(
                f"model {model.name} expects {demucs.samplerate} Hz x {demucs.audio_channels} channels"
            )
        if STEM not in demucs.sources:
            raise RuntimeError(f"model {model.name} has no {STEM} stem (sources: {demucs.sources})")
        self.model = demucs.to(self.torch_device).eval()
        self.params = params
        self.stem_index = demucs.sources.index(STEM)
        self.stride = self._stride()

    def _stride(self) -> int:
        """Samples between segment starts, computed exactly as apply_model does."""
        members = self.model.models if isinstance(self.model, BagOfModels) else [self.model]
        strides = set()
        for member in members:
            segment = self.params.segment or float(member.segment)
            if segment > float(member.segment):
                raise RuntimeError(f"DEMUCS_SEGMENT {segment} exceeds the model's {float(member.segment)} s")
            strides.add(int((1 - self.params.overlap) * int(member.samplerate * segment)))
        if len(strides) != 1:
            raise RuntimeError("the bag's models use different segment lengths: set DEMUCS_SEGMENT")
        return strides.pop()

    def separate(self, audio: DecodedAudio, dest: Path) -> Separated:
        """Write the vocals stem of `audio` to `dest` (float WAV, same length and rate)."""
        stride = self.stride
        # Windows of n strides; each keeps n - 2 of them: the first stride is covered by a segment
        # that starts before the window, the last by segments cut by its end.
        n = max(3, round(self.params.chunk_seconds * SAMPLE_RATE / stride))
        window, hop = n * stride, (n - 2) * stride
        std = audio.std or 1.0
        with (
            sf.SoundFile(audio.path) as source,
            StemWriter(dest, SAMPLE_RATE, CHANNELS, audio.frames) as sink,
        ):
            start = 0
            while True:
                source.seek(start)
                block = source.read(min(window, audio.frames - start), dtype="float32", always_2d=True)
                stem = self._vocals(torch.from_numpy(block.T.copy()), audio.mean, std)
                last = start + window >= audio.frames
                kept = stem[:, (0 if start == 0 else stride) : (None if last else (n - 1) * stride)]
                sink.write(kept.T.numpy())
                if last:
                    break
                start += hop
        return sink.result()

    def _vocals(self, mix: torch.Tensor, mean: float, std: float) -> torch.Tensor:
        # Demucs's own normalisation (demucs.separate), with the whole track's statistics so that
        # every window is scaled alike.
        mix = ((mix - mean) / std).to(self.torch_device)
        with torch.inference_mode():
            sources = apply_model(
                self.model,
                mix[None],
                shifts=self.params.shifts,
                split=True,
                overlap=self.params.overlap,
                segment=self.params.segment,
                device=self.torch_device,
            )
        return (sources[0, self.stem_index] * std + mean).cpu()
