"""Mixtures of speech and recorded music at a chosen speech-to-music ratio.

Speech is espeak-ng (a voice per language, sentences separated by real pauses, so the music left
in the pauses can be measured); music is an excerpt of Debian's hyperrogue-music (orchestral
recordings, CC-BY-SA-3.0) fetched by `scripts/fetch-test-music.sh`. Everything is 48 kHz float.
"""

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import cache_dir
from .audio import RATE, encode_voice_note, read, write_wav

# Two espeak-ng voices per language (variants differ in pitch and timbre); the second one speaks
# the other side of a stereo dialogue.
VOICES: dict[str, tuple[str, str]] = {
    "en": ("en-us+m3", "en-gb+f3"),
    "de": ("de+f2", "de+m4"),
    "fr": ("fr-fr+m7", "fr-fr+f4"),
    "es": ("es+f1", "es-419+m2"),
}
SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "Hi, it's me. I'm on my way home now.",
        "The train was late again, so I'll be there in about twenty minutes.",
        "Could you put the oven on? Thanks, see you soon.",
        "By the way, the music in this cafe is really loud.",
    ),
    "de": (
        "Hallo, ich bin es. Ich bin jetzt auf dem Weg nach Hause.",
        "Der Zug hatte wieder Verspätung, ich bin in zwanzig Minuten da.",
        "Kannst du schon mal den Ofen anmachen? Danke, bis gleich.",
        "Übrigens, die Musik in diesem Café ist wirklich laut.",
    ),
    "fr": (
        "Salut, c'est moi. Je suis sur le chemin du retour.",
        "Le train avait encore du retard, j'arrive dans vingt minutes.",
        "Tu peux allumer le four? Merci, à tout de suite.",
        "Au fait, la musique dans ce café est vraiment forte.",
    ),
    "es": (
        "Hola, soy yo. Ya voy de camino a casa.",
        "El tren llegó tarde otra vez, así que llego en veinte minutos.",
        "¿Puedes encender el horno? Gracias, hasta ahora.",
        "Por cierto, la música en este café está muy alta.",
    ),
}
# Orchestral tracks that stay busy after their first seconds (no long quiet passages).
TRACKS = ("hr3-graveyard.ogg", "hr3-desert.ogg", "hr3-crossroads.ogg", "hr-domina-mountain.ogg")
TRACK_SKIP_SECONDS = 10.0  # past the fade-ins
PEAK = 0.5  # the mix peaks at -6 dBFS: headroom for the encoders, a plausible phone level


class MusicMissing(Exception):
    pass


@dataclass(frozen=True)
class Mixture:
    speech: np.ndarray  # (frames, channels) float32 at RATE: the speech as it is in the mix
    music: np.ndarray  # same shape

    @property
    def mix(self) -> np.ndarray:
        return self.speech + self.music


def music_dir() -> Path:
    """Where fetch-test-music.sh unpacks the music."""
    return cache_dir() / "test-music/hyperrogue-music/usr/share/hyperrogue/music"


def make_mixture(
    seconds: float, snr_db: float, language: str = "en", seed: int = 0, dialogue: bool = False
) -> Mixture:
    """Mono speech in `language` over mono music; with `dialogue`, stereo: two speakers taking turns,
    one per channel (with a little crosstalk), over the stereo music, so the two channels differ."""
    if language not in VOICES:
        raise ValueError(f"no voice for language {language!r}; known: {', '.join(VOICES)}")
    rng = np.random.default_rng(seed)
    frames = int(seconds * RATE)
    if dialogue:
        turns = _speech_turns(language, frames, rng, speakers=2)
        speech = np.stack([turns[0] + 0.15 * turns[1], turns[1] + 0.15 * turns[0]], axis=1)
    else:
        speech = _speech_turns(language, frames, rng, speakers=1)[0][:, None]
    music = _music(frames, rng, stereo=dialogue)
    music *= np.sqrt(np.sum(speech**2) / np.sum(music**2) / 10 ** (snr_db / 10))
    gain = PEAK / np.max(np.abs(speech + music))
    return Mixture((speech * gain).astype(np.float32), (music * gain).astype(np.float32))


def write_mixture(mixture: Mixture, out_dir: Path) -> dict[str, Path]:
    """speech.wav and mix.wav (float WAV) and note.ogg (the mix as a WhatsApp voice note)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    speech = write_wav(out_dir / "speech.wav", mixture.speech)
    mix = write_wav(out_dir / "mix.wav", mixture.mix)
    return {"speech": speech, "mix": mix, "note": encode_voice_note(mix, out_dir / "note.ogg")}


def _speech_turns(language: str, frames: int, rng: np.random.Generator, speakers: int) -> list[np.ndarray]:
    """One track per speaker; sentences in turn, each followed by a 0.6-1.2 s pause for everyone."""
    tracks = [np.zeros(frames, dtype=np.float32) for _ in range(speakers)]
    pos, turn = int(0.4 * RATE), 0
    sentences = SENTENCES[language]
    start = int(rng.integers(len(sentences)))
    while pos < frames:
        speaker = turn % speakers
        text = sentences[(start + turn) % len(sentences)]
        voice = _espeak(VOICES[language][speaker], text, words_per_minute=int(rng.integers(145, 170)))
        piece = voice[: frames - pos]
        tracks[speaker][pos : pos + len(piece)] = piece
        pos += len(voice) + int(rng.uniform(0.6, 1.2) * RATE)
        turn += 1
    return tracks


def _espeak(voice: str, text: str, words_per_minute: int) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="unmix-espeak-") as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(wav), text],
            check=True,
            capture_output=True,
        )
        speech = read(wav)[:, 0]
    # espeak-ng pads with a little silence; trimmed so the pauses are the ones chosen above.
    loud = np.flatnonzero(np.abs(speech) > 1e-3)
    return speech[loud[0] : loud[-1] + 1] if len(loud) else speech


def _music(frames: int, rng: np.random.Generator, stereo: bool) -> np.ndarray:
    folder = music_dir()
    track = folder / TRACKS[int(rng.integers(len(TRACKS)))]
    if not track.is_file():
        raise MusicMissing(
            f"no test music at {folder}: run job-image/scripts/fetch-test-music.sh (it fetches Debian's "
            "hyperrogue-music into the cache)"
        )
    music = read(track).astype(np.float64)
    start = int(rng.uniform(TRACK_SKIP_SECONDS, TRACK_SKIP_SECONDS + 20) * RATE)
    excerpt = music[start : start + frames]
    if len(excerpt) < frames:
        raise ValueError(f"{track.name} is too short for a {frames / RATE:.0f} s excerpt")
    return excerpt if stereo else excerpt.mean(axis=1, keepdims=True)
