"""Probe, decode and encode on their own: the rules that do not need the model."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SR, Media, decoded_seconds, ffmpeg, ffprobe, stream
from unmix_job.decode import decode
from unmix_job.encode import (
    FRAMING_BPS,
    OPUS_MAX_BPS,
    OPUS_MIN_BPS,
    VOICE_NOTE_MAX_BYTES,
    encode,
    voice_note_bitrate,
)
from unmix_job.probe import probe
from unmix_job.separate import Separated


def stem_file(path: Path, samples: np.ndarray, rate: int = SR) -> Separated:
    sf.write(path, samples, rate, subtype="FLOAT")
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    return Separated(path, rate, channels, len(samples), float(np.abs(samples).max()))


def test_P6_P7_mono_16k_is_decoded_to_44k1_stereo(media: Media, tmp_path: Path) -> None:
    source = tmp_path / "mono.ogg"
    ffmpeg("-i", str(media.speech()), "-ar", "16000", "-ac", "1", "-c:a", "libopus", str(source))
    info = probe(source)
    assert info.audio is not None and info.audio.channels == 1
    audio = decode(source, info.audio, tmp_path / "mix.wav", max_duration=60, sample_rate=SR, channels=2)
    samples, rate = sf.read(audio.path, dtype="float32", always_2d=True)
    assert (rate, audio.sample_rate, audio.channels) == (SR, SR, 2)
    assert samples.shape == (audio.frames, 2)
    np.testing.assert_array_equal(samples[:, 0], samples[:, 1])
    assert audio.duration == pytest.approx(decoded_seconds(source), abs=1e-3)
    assert audio.peak == pytest.approx(float(np.abs(samples).max()))


def test_cover_art_is_not_a_video(media: Media, tmp_path: Path) -> None:
    cover = tmp_path / "cover.png"
    ffmpeg("-f", "lavfi", "-i", "color=red:size=64x64", "-frames:v", "1", str(cover))
    song = tmp_path / "song.mp3"
    ffmpeg("-i", str(media.mp3()), "-i", str(cover), "-map", "0:a", "-map", "1:v", "-c:a", "copy",
           "-disposition:v", "attached_pic", str(song))  # fmt: skip
    info = probe(song)
    assert info.video is None and info.audio is not None


def test_voice_note_bitrate_follows_the_duration() -> None:
    assert voice_note_bitrate(5) == OPUS_MAX_BPS
    rates = [voice_note_bitrate(d) for d in range(10, 900, 10)]
    assert rates == sorted(rates, reverse=True)
    assert min(rates) == OPUS_MIN_BPS
    for duration in range(10, 900, 10):
        rate = voice_note_bitrate(duration)
        assert rate == OPUS_MIN_BPS or (rate + FRAMING_BPS) * duration / 8 < VOICE_NOTE_MAX_BYTES


@pytest.mark.parametrize("seconds", [150.0, 250.0, 440.0])
def test_voice_notes_fit_512_kb_up_to_the_floor_bitrate(media: Media, tmp_path: Path, seconds: float) -> None:
    # Real encodes of speech over music, at durations where the budget, not the cap, decides.
    wav = tmp_path / "long.wav"
    ffmpeg("-stream_loop", "-1", "-i", str(media.mix(6.0)), "-t", str(seconds), "-c:a", "pcm_f32le", str(wav))
    source = probe(wav)
    stem = Separated(wav, SR, 2, int(seconds * SR), 0.5)
    out = encode("ogg-opus", stem, seconds, wav, source, False, tmp_path)
    assert out.audio_bitrate < OPUS_MAX_BPS
    assert out.path.stat().st_size <= VOICE_NOTE_MAX_BYTES
    audio = stream(ffprobe(out.path), "audio")
    assert (audio["codec_name"], audio["channels"]) == ("opus", 1)


def test_mono_sources_stay_mono_and_loud_stems_are_not_clipped(media: Media, tmp_path: Path) -> None:
    mono = tmp_path / "mono.mp3"
    ffmpeg("-i", str(media.mix(5.0)), "-ac", "1", str(mono))
    samples, _ = sf.read(media.mix(5.0), dtype="float32", always_2d=True)
    stem = stem_file(tmp_path / "stem.wav", samples * (1.8 / np.abs(samples).max()))
    out = encode("mp3", stem, 5.0, mono, probe(mono), False, tmp_path)
    assert stream(ffprobe(out.path), "audio")["channels"] == 1
    back = tmp_path / "back.wav"
    ffmpeg("-i", str(out.path), "-c:a", "pcm_f32le", str(back))
    assert np.abs(sf.read(back, dtype="float32")[0]).max() < 1.0


def test_stereo_is_decoded_to_48k_mono_as_a_plain_average(media: Media, tmp_path: Path) -> None:
    # DeepFilterNet3's format. ffmpeg's default downmix would make the mono 3 dB louder than the source.
    source = tmp_path / "stereo.wav"
    samples, _ = sf.read(media.mix(3.0), dtype="float32", always_2d=True)
    sf.write(source, np.stack([samples[:, 0], samples[:, 0]], axis=1), SR, subtype="FLOAT")
    info = probe(source)
    assert info.audio is not None
    audio = decode(source, info.audio, tmp_path / "mix.wav", max_duration=60, sample_rate=48_000, channels=1)
    mono, rate = sf.read(audio.path, dtype="float32")
    assert (rate, audio.channels, mono.ndim) == (48_000, 1, 1)
    assert audio.duration == pytest.approx(3.0, abs=1e-3)
    assert audio.peak == pytest.approx(float(np.abs(samples[:, 0]).max()), rel=0.05)


def test_a_mono_stem_fills_both_channels_of_a_stereo_reply(media: Media, tmp_path: Path) -> None:
    samples, _ = sf.read(media.mix(3.0), dtype="float32", always_2d=True)
    stem = stem_file(tmp_path / "stem.wav", samples[:, 0], 48_000)
    source = media.m4a()  # stereo
    out = encode("m4a", stem, 3.0, source, probe(source), False, tmp_path)
    audio = stream(ffprobe(out.path), "audio")
    assert (audio["channels"], audio["sample_rate"]) == (2, "48000")
    back = tmp_path / "back.wav"
    ffmpeg("-i", str(out.path), "-c:a", "pcm_f32le", str(back))
    decoded = sf.read(back, dtype="float32")[0]
    # The same signal in both channels (AAC's coding leaves a difference far below it).
    left, right = decoded[:, 0], decoded[:, 1]
    assert np.sum((left - right) ** 2) < 1e-3 * np.sum(left**2)
    # At the stem's level, not 3 dB below it (AAC changes the peak a little).
    assert np.abs(decoded).max() == pytest.approx(stem.peak, rel=0.1)
