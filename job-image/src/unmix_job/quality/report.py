"""The quality table: every mixture through every engine and output format of the real pipeline."""

import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import OutputFormat
from .audio import encode_audio_file, encode_voice_note, read, write_wav
from .mixtures import make_mixture
from .pipeline import Engine, run_job
from .scores import DFN3_FLOORS, Score, failures, score


@dataclass(frozen=True)
class Case:
    language: str
    snr_db: float
    output_format: OutputFormat
    dialogue: bool = False  # stereo: two speakers, one per channel


@dataclass(frozen=True)
class Row:
    engine: str
    case: Case
    score: Score
    real_time_factor: float
    verdict: str  # "pass", or what failed


def cases(languages: list[str], snrs: list[float], formats: list[OutputFormat]) -> list[Case]:
    """Voice notes and mono audio files in every language and ratio; a stereo dialogue per language
    at the middle ratio, as M4A (the only stereo reply: voice notes are mono)."""
    mono = [Case(lang, snr, fmt) for fmt in formats for lang in languages for snr in snrs]
    stereo = [Case(lang, sorted(snrs)[len(snrs) // 2], "m4a", dialogue=True) for lang in languages]
    return mono + (stereo if "m4a" in formats else [])


def run_case(engine: Engine, case: Case, seconds: float, work: Path) -> Row:
    """What a user sends for this format (a voice note, or an M4A file), through unmix-job, scored.
    The seed comes from the mixture alone: every engine and format gets the same one."""
    seed = zlib.crc32(f"{case.language} {case.snr_db:g} {case.dialogue}".encode())
    mixture = make_mixture(seconds, case.snr_db, case.language, seed=seed, dialogue=case.dialogue)
    mix_wav = write_wav(work / "mix.wav", mixture.mix)
    if case.output_format == "m4a":
        sent = encode_audio_file(mix_wav, work / "sent.m4a")
    else:
        sent = encode_voice_note(mix_wav, work / "note.ogg")
    reply = run_job(engine, sent, case.output_format, work / f"reply.{case.output_format}")
    result = score(mixture.speech, read(sent), read(reply.path))
    floors = DFN3_FLOORS.get((case.output_format, case.snr_db)) if engine.model_name == "dfn3" else None
    verdict = "no floor for this case" if floors is None else "; ".join(failures(result, floors)) or "pass"
    return Row(engine.model_name, case, result, reply.manifest["realTimeFactor"], verdict)


def rows(engines: list[Engine], all_cases: list[Case], seconds: float) -> Iterator[Row]:
    for engine in engines:
        for case in all_cases:
            with tempfile.TemporaryDirectory(prefix="unmix-quality-") as tmp:
                yield run_case(engine, case, seconds, Path(tmp))


COLUMNS = (
    "engine", "reply", "channels", "lang", "speech/music dB", "offset ms", "SI-SDR mix", "SI-SDR reply",
    "SI-SDRi", "music in pauses dB quieter", "speech LUFS", "reply LUFS", "Δ LU", "RTF", "floors",
)  # fmt: skip


def header() -> str:
    return f"| {' | '.join(COLUMNS)} |\n|{'---|' * len(COLUMNS)}"


def format_row(row: Row) -> str:
    s, c = row.score, row.case
    cells = (
        row.engine, c.output_format, "stereo" if c.dialogue else "mono", c.language, f"{c.snr_db:+g}",
        f"{s.offset_ms:+.1f}", f"{s.si_sdr_mix_db:.1f}", f"{s.si_sdr_reply_db:.1f}",
        f"{s.si_sdr_improvement_db:+.1f}", f"{s.music_attenuation_db:.1f}", f"{s.speech_loudness_lufs:.1f}",
        f"{s.reply_loudness_lufs:.1f}", f"{s.loudness_delta_lu:+.1f}", f"{row.real_time_factor:.3f}",
        row.verdict,
    )  # fmt: skip
    return f"| {' | '.join(cells)} |"
