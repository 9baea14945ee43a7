"""Job parameters, read once from the environment (the Job's pod spec sets them)."""

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import limits
from .models import DEFAULT_MODEL, MODELS

OutputFormat = Literal["ogg-opus", "mp3", "m4a", "mp4"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("ogg-opus", "mp3", "m4a", "mp4")


@dataclass(frozen=True)
class DemucsParams:
    segment: float | None  # seconds; None: the model's own
    overlap: float
    shifts: int
    chunk_seconds: float  # window length; memory grows with it, the per-window overhead shrinks


class ConfigError(Exception):
    """A missing or malformed variable: a bug in the caller, reported as a transient failure."""


@dataclass(frozen=True)
class Settings:
    input_url: str
    output_url: str
    manifest_url: str
    input_kind: Literal["audio", "video"]
    input_mime_type: str
    output_format: OutputFormat
    model_name: str
    model_repo: Path | None
    device: Literal["auto", "cpu", "cuda"]
    segment: float | None
    overlap: float
    shifts: int
    chunk_seconds: float
    max_duration_seconds: float
    max_input_bytes: int
    max_output_bytes: int
    traceparent: str | None
    work_dir: Path
    termination_log: Path

    @property
    def demucs(self) -> DemucsParams:
        return DemucsParams(self.segment, self.overlap, self.shifts, self.chunk_seconds)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(f"{name} is required")
            return value

        def choice(name: str, allowed: tuple[str, ...], default: str | None = None) -> str:
            value = env.get(name, "").strip() or default
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")
            return value

        def optional_number(name: str, low: float, high: float = float("inf")) -> float | None:
            raw = env.get(name, "").strip()
            if not raw:
                return None
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number (got {raw!r})") from None
            if not low <= value <= high:
                raise ConfigError(f"{name} must be between {low} and {high} (got {raw})")
            return value

        def number(name: str, default: float, low: float, high: float = float("inf")) -> float:
            value = optional_number(name, low, high)
            return default if value is None else value

        def integer(name: str, default: int, low: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or int(raw) < low:
                raise ConfigError(f"{name} must be an integer >= {low} (got {raw!r})")
            return int(raw)

        repo = env.get("MODEL_REPO", "").strip()
        return cls(
            input_url=required("INPUT_URL"),
            output_url=required("OUTPUT_URL"),
            manifest_url=required("MANIFEST_URL"),
            input_kind=choice("INPUT_KIND", ("audio", "video")),  # type: ignore[arg-type]
            input_mime_type=env.get("INPUT_MIME_TYPE", "").strip(),
            output_format=choice("OUTPUT_FORMAT", OUTPUT_FORMATS),  # type: ignore[arg-type]
            model_name=choice("MODEL_NAME", tuple(MODELS), DEFAULT_MODEL),
            model_repo=Path(repo) if repo else None,
            device=choice("DEVICE", ("auto", "cpu", "cuda"), "auto"),  # type: ignore[arg-type]
            segment=optional_number("DEMUCS_SEGMENT", 0.1),
            # Below 0.5 so that the chunker's one-stride margins cover a segment's overlap.
            overlap=number("DEMUCS_OVERLAP", 0.25, 0.0, 0.49),
            shifts=integer("DEMUCS_SHIFTS", 1, 0),
            chunk_seconds=number("CHUNK_SECONDS", 180.0, 1.0),
            max_duration_seconds=number("MAX_DURATION_SECONDS", limits.DEFAULT_MAX_DURATION_SECONDS, 1.0),
            max_input_bytes=integer("MAX_INPUT_BYTES", limits.DEFAULT_MAX_INPUT_BYTES, 1),
            max_output_bytes=integer("MAX_OUTPUT_BYTES", limits.WHATSAPP_UPLOAD_BYTES, 1),
            traceparent=env.get("TRACEPARENT", "").strip() or None,
            work_dir=Path(env.get("WORK_DIR", "").strip() or tempfile.gettempdir()),
            termination_log=Path(env.get("TERMINATION_LOG", "").strip() or "/dev/termination-log"),
        )
