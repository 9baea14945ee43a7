"""Scoring a reply against the clean speech of its mixture, and the floors a reply must meet.

- offset: the reply's constant shift against the speech (cross-correlation). Only up to
  OFFSET_TOLERANCE_MS of it is compensated before scoring; a larger one fails on its own and
  is left in, so a late reply also scores badly instead of being silently realigned.
- SI-SDR (scale-invariant signal-to-distortion ratio, Le Roux et al. 2019) of the mix and of the
  reply against the clean speech, per channel; the worst channel is reported, so swapped or
  mono-summed channels show up.
- music attenuation: how much quieter the music got in the pauses of speech, once the reply is
  brought back to the speech's level (so its overall gain does not count). Pauses come from the
  clean speech's envelope, away from its edges.
- loudness: integrated LUFS (ffmpeg ebur128) of the speech in the input and of the reply.
"""

import re
from dataclasses import asdict, dataclass

import numpy as np

from .audio import RATE, loudness_lufs

OFFSET_SEARCH_MS = 500.0
OFFSET_TOLERANCE_MS = 2.0
FRAME = RATE // 50  # 20 ms envelope frames
PAUSE_LEVEL_DB = -50.0  # a frame is silent under this, relative to the loudest speech frame
PAUSE_MARGIN_FRAMES = 5  # 100 ms kept clear of speech on both sides (onsets, tails, look-ahead)
MIN_PAUSE_SECONDS = 0.5
GAIN_FLOOR = 1e-3  # the speech's gain in a reply with (almost) none of it: -60 dB, not zero
EPS = 1e-12


@dataclass(frozen=True)
class Score:
    offset_ms: float
    si_sdr_mix_db: float
    si_sdr_reply_db: float
    si_sdr_improvement_db: float
    music_attenuation_db: float
    speech_loudness_lufs: float
    reply_loudness_lufs: float
    loudness_delta_lu: float
    channel: int | None  # stereo: the worst channel (0-based), which the SI-SDR figures are from

    def to_json(self) -> dict[str, float]:
        """The figures under the names the end-to-end test reads (offset_ms → offsetMs)."""
        return {
            re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key): round(value, 2) + 0.0  # no -0.0
            for key, value in asdict(self).items()
            if key != "channel"
        }


@dataclass(frozen=True)
class Floors:
    """What a reply must reach. The SI-SDR floors depend on the output format and the ratio: Opus
    at 32 kbps caps even clean speech at ~11 dB SI-SDR, and a voice note goes through it twice."""

    si_sdr_improvement_db: float
    si_sdr_reply_db: float
    music_attenuation_db: float = 15.0  # measured 20.1-51.3 dB over all 56 rows of two tables
    loudness_delta_lu: float = 4.0  # either way; measured -0.8 to -2.3 LU (mono replies)
    offset_ms: float = OFFSET_TOLERANCE_MS


# DeepFilterNet3 through unmix-job, per (output format, speech-to-music dB): the lowest SI-SDR
# improvement and reply SI-SDR over two runs of the table (README, "Quality": 8 mixtures, 4
# languages, per cell), less 1.5 dB.
DFN3_FLOORS: dict[tuple[str, float], Floors] = {
    ("ogg-opus", 5.0): Floors(si_sdr_improvement_db=-0.6, si_sdr_reply_db=3.4),  # measured 0.9, 4.9
    ("ogg-opus", 0.0): Floors(si_sdr_improvement_db=2.5, si_sdr_reply_db=1.7),  # measured 4.0, 3.2
    ("ogg-opus", -5.0): Floors(si_sdr_improvement_db=6.0, si_sdr_reply_db=0.6),  # measured 7.5, 2.1
    ("m4a", 5.0): Floors(si_sdr_improvement_db=4.4, si_sdr_reply_db=9.4),  # measured 5.9, 10.9
    ("m4a", 0.0): Floors(si_sdr_improvement_db=6.1, si_sdr_reply_db=6.1),  # measured 7.6, 7.6
    ("m4a", -5.0): Floors(si_sdr_improvement_db=8.3, si_sdr_reply_db=3.3),  # measured 9.8, 4.8
}


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """SI-SDR in dB of one channel (no mean removal)."""
    alpha = np.dot(estimate, reference) / (np.dot(reference, reference) + EPS)
    target = alpha * reference
    residual = estimate - target
    return float(10 * np.log10((np.dot(target, target) + EPS) / (np.dot(residual, residual) + EPS)))


def offset_samples(reply: np.ndarray, speech: np.ndarray) -> int:
    """How many samples the reply lags the speech (negative: ahead), within ±OFFSET_SEARCH_MS."""
    a, b = speech.sum(axis=1), reply.sum(axis=1)
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    reach = int(OFFSET_SEARCH_MS * RATE / 1000)
    lags = np.concatenate([np.arange(0, reach + 1), np.arange(-reach, 0)])
    return int(lags[np.argmax(np.abs(np.concatenate([corr[: reach + 1], corr[-reach:]])))])


def pauses(speech: np.ndarray) -> np.ndarray:
    """Per-sample mask of the pauses in the speech, at least PAUSE_MARGIN_FRAMES away from any of it."""
    frames = len(speech) // FRAME
    energy = (speech[: frames * FRAME] ** 2).sum(axis=1).reshape(frames, FRAME).sum(axis=1)
    talking = energy > energy.max() * 10 ** (PAUSE_LEVEL_DB / 10)
    near = np.convolve(talking, np.ones(2 * PAUSE_MARGIN_FRAMES + 1), mode="same") > 0
    return np.pad(np.repeat(~near, FRAME), (0, len(speech) - frames * FRAME))


def score(speech: np.ndarray, mix: np.ndarray, reply: np.ndarray) -> Score:
    """Arrays are (frames, channels) at RATE. A mono reply is scored against the mono average of
    the speech and mix (the product answers a voice note in mono); otherwise channel by channel."""
    channels = min(speech.shape[1], reply.shape[1])
    speech, mix, reply = (_with_channels(audio, channels) for audio in (speech, mix, reply))
    mix = _fit(mix, len(speech))
    lag = offset_samples(reply, speech)
    tolerance = int(OFFSET_TOLERANCE_MS * RATE / 1000)
    aligned = _fit(_advance(reply, int(np.clip(lag, -tolerance, tolerance))), len(speech))

    per_channel = [
        (si_sdr(mix[:, c], speech[:, c]), si_sdr(aligned[:, c], speech[:, c])) for c in range(speech.shape[1])
    ]
    worst = min(range(len(per_channel)), key=lambda c: per_channel[c][1] - per_channel[c][0])
    mix_db, reply_db = per_channel[worst]
    speech_loudness, reply_loudness = loudness_lufs(speech), loudness_lufs(reply)
    return Score(
        offset_ms=lag * 1000 / RATE,
        si_sdr_mix_db=mix_db,
        si_sdr_reply_db=reply_db,
        si_sdr_improvement_db=reply_db - mix_db,
        music_attenuation_db=_music_attenuation_db(speech, mix, aligned),
        speech_loudness_lufs=speech_loudness,
        reply_loudness_lufs=reply_loudness,
        loudness_delta_lu=reply_loudness - speech_loudness,
        channel=worst if speech.shape[1] > 1 else None,
    )


def failures(result: Score, floors: Floors) -> list[str]:
    """One line per floor the reply misses, naming what failed; empty when it passes."""
    channel = "" if result.channel is None else f" ({('left', 'right')[result.channel]} channel)"
    checks = [
        (
            abs(result.offset_ms) <= floors.offset_ms,
            f"offset: the reply is shifted by {result.offset_ms:+.1f} ms against the speech "
            f"(allowed ±{floors.offset_ms:g} ms)",
        ),
        (
            result.si_sdr_improvement_db >= floors.si_sdr_improvement_db,
            f"SI-SDR improvement{channel}: {result.si_sdr_improvement_db:.1f} dB, "
            f"floor {floors.si_sdr_improvement_db:g} dB",
        ),
        (
            result.si_sdr_reply_db >= floors.si_sdr_reply_db,
            f"SI-SDR of the reply{channel}: {result.si_sdr_reply_db:.1f} dB, "
            f"floor {floors.si_sdr_reply_db:g} dB",
        ),
        (
            result.music_attenuation_db >= floors.music_attenuation_db,
            f"music attenuation in the pauses: {result.music_attenuation_db:.1f} dB, "
            f"floor {floors.music_attenuation_db:g} dB",
        ),
        (
            abs(result.loudness_delta_lu) <= floors.loudness_delta_lu,
            f"loudness: the reply is {result.loudness_delta_lu:+.1f} LU from the speech in the input "
            f"(allowed ±{floors.loudness_delta_lu:g} LU)",
        ),
    ]
    return [message for ok, message in checks if not ok]


def _with_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """As is, or the plain average of its channels in each of `channels`."""
    if audio.shape[1] == channels:
        return audio
    return np.repeat(audio.mean(axis=1, keepdims=True), channels, axis=1)


def _fit(audio: np.ndarray, frames: int) -> np.ndarray:
    """Cut or zero-pad to `frames` (codecs pad the end by up to a frame)."""
    return audio[:frames] if len(audio) >= frames else np.pad(audio, ((0, frames - len(audio)), (0, 0)))


def _advance(audio: np.ndarray, samples: int) -> np.ndarray:
    """Move earlier by `samples` (later when negative)."""
    return audio[samples:] if samples >= 0 else np.pad(audio, ((-samples, 0), (0, 0)))


def _music_attenuation_db(speech: np.ndarray, mix: np.ndarray, reply: np.ndarray) -> float:
    """Music power in the pauses, mix over reply, with the reply first brought back to the speech's
    level (its projection gain on the speech), so a quieter or louder reply counts for nothing."""
    quiet = pauses(speech)
    if quiet.sum() < MIN_PAUSE_SECONDS * RATE:
        raise ValueError(f"the speech has under {MIN_PAUSE_SECONDS} s of pauses: no music attenuation")
    gain = max(np.vdot(reply, speech) / (np.vdot(speech, speech) + EPS), GAIN_FLOOR)
    mix_power, reply_power = np.mean(mix[quiet] ** 2), np.mean((reply[quiet] / gain) ** 2)
    return float(10 * np.log10((mix_power + EPS) / (reply_power + EPS)))
