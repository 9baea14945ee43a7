"""The Demucs engine's windowed separation against Demucs's own whole-track `apply_model`.

Quality cannot be tested without the real weights; what can be: that cutting the track into
bounded windows changes nothing (same samples, same length, same alignment).
"""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from demucs.apply import apply_model
from demucs.pretrained import get_model

from conftest import SR, chords
from unmix_job.config import DemucsParams
from unmix_job.decode import measure
from unmix_job.demucs_engine import DemucsSeparator
from unmix_job.models import MODELS

HTDEMUCS = MODELS["htdemucs"]


def whole_track_vocals(model_repo: Path, wav: Path, segment: float | None) -> np.ndarray:
    """What demucs.separate does for a track, all in one call, vocals only."""
    model = get_model("htdemucs", repo=model_repo)
    mix = torch.from_numpy(sf.read(wav, dtype="float32", always_2d=True)[0].T.copy())
    ref = mix.mean(0)
    mean, std = ref.mean(), ref.std()
    with torch.no_grad():
        sources = apply_model(
            model, ((mix - mean) / std)[None], shifts=0, split=True, overlap=0.25, segment=segment
        )
    return (sources[0, model.sources.index("vocals")] * std + mean).numpy().T


@pytest.fixture(scope="module")
def track(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 13.37 s: not a whole number of segments or strides.
    frames = int(13.37 * SR)
    noise = np.random.default_rng(3).normal(0, 0.05, (frames, 2)).astype(np.float32)
    path = tmp_path_factory.mktemp("track") / "mix.wav"
    sf.write(path, chords(13.37)[:frames] + noise, SR, subtype="FLOAT")
    return path


@pytest.mark.parametrize("chunk_seconds", [1.0, 6.0, 10.0, 100.0])
@pytest.mark.parametrize("segment", [None, 1.3])
def test_windows_equal_the_whole_track(
    model_repo: Path, track: Path, tmp_path: Path, chunk_seconds: float, segment: float | None
) -> None:
    audio = measure(track)
    params = DemucsParams(segment=segment, overlap=0.25, shifts=0, chunk_seconds=chunk_seconds)
    separator = DemucsSeparator(HTDEMUCS, model_repo, "cpu", params)
    result = separator.separate(audio, tmp_path / "vocals.wav")

    ours = sf.read(result.path, dtype="float32", always_2d=True)[0]
    reference = whole_track_vocals(model_repo, track, segment)
    assert result.frames == audio.frames == len(ours) == len(reference)
    # measure()'s float64 statistics differ from torch's float32 ones in the last bits only.
    np.testing.assert_allclose(ours, reference, atol=2e-5, rtol=0)
    assert result.peak == pytest.approx(float(np.abs(ours).max()))


def test_random_shifts_keep_the_length(model_repo: Path, track: Path, tmp_path: Path) -> None:
    # Shifted runs differ from unshifted ones by design (a random model is far from shift
    # invariant, so there is nothing to compare the samples with); the length must still hold.
    audio = measure(track)
    params = DemucsParams(segment=None, overlap=0.25, shifts=2, chunk_seconds=4.0)
    result = DemucsSeparator(HTDEMUCS, model_repo, "cpu", params).separate(audio, tmp_path / "v.wav")
    assert result.frames == audio.frames == sf.info(result.path).frames


def test_a_segment_longer_than_the_model_is_refused(model_repo: Path) -> None:
    params = DemucsParams(segment=2.5, overlap=0.25, shifts=0, chunk_seconds=10.0)
    with pytest.raises(RuntimeError, match="exceeds the model"):
        DemucsSeparator(HTDEMUCS, model_repo, "cpu", params)


def test_a_missing_model_repo_is_an_error_not_an_exit(tmp_path: Path) -> None:
    params = DemucsParams(segment=None, overlap=0.25, shifts=0, chunk_seconds=10.0)
    with pytest.raises(RuntimeError, match="not a directory"):
        DemucsSeparator(HTDEMUCS, tmp_path / "absent", "cpu", params)
