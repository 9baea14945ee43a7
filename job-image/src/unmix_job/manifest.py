"""The result manifest: what was produced, by what, and how long each step took.

Top-level names follow the SeparationJob's status.result (crds/src/separationjob.ts) so the
controller can copy them across.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .logs import log
from .models import Model
from .probe import MediaInfo

SCHEMA_VERSION = 1


@dataclass
class StepTimer:
    seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    # (name, start, end in ns since the epoch, error) of every step, the failed one included, for tracing
    spans: list[tuple[str, int, int, str | None]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        begin = time.perf_counter()
        begin_ns = time.time_ns()
        try:
            yield
        except BaseException as err:
            self.spans.append((name, begin_ns, time.time_ns(), type(err).__name__))
            raise
        self.spans.append((name, begin_ns, time.time_ns(), None))
        self.seconds[name] = round(time.perf_counter() - begin, 3)
        log(f"step {name} took {self.seconds[name]:.2f} s")

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 3)


def describe(info: MediaInfo) -> dict[str, object]:
    return {
        "container": info.container,
        "durationSeconds": info.duration,
        "audioCodec": info.audio.codec if info.audio else None,
        "sampleRate": info.audio.sample_rate if info.audio else None,
        "channels": info.audio.channels if info.audio else None,
        "videoCodec": info.video.codec if info.video else None,
    }


def build(
    *,
    model: Model,
    device: str,
    device_name: str,
    versions: dict[str, str],
    media_seconds: float,
    input_bytes: int,
    input_mime_type: str,
    input_kind: str,
    input_info: MediaInfo,
    output_format: str,
    mime_type: str,
    size_bytes: int,
    audio_bitrate: int,
    video_copied: bool | None,
    output_info: MediaInfo,
    timer: StepTimer,
    traceparent: str | None,
) -> dict[str, object]:
    separate = timer.seconds["separate"]
    return {
        "schemaVersion": SCHEMA_VERSION,
        "model": model.name,
        # The engine and the version of its package that produced the result; the model id is
        # what the result cache is keyed by.
        "engine": model.engine,
        "engineVersion": model.version,
        "modelId": model.id,
        "device": device,
        "deviceName": device_name,
        "versions": versions,
        "mediaSeconds": round(media_seconds, 3),
        "mimeType": mime_type,
        "sizeBytes": size_bytes,
        "separateSeconds": separate,
        # Processing time over media time (lower is faster; 0.01 is 100x real time), separation
        # alone and the whole job.
        "realTimeFactor": round(separate / media_seconds, 5),
        "totalRealTimeFactor": round(timer.total() / media_seconds, 5),
        "stepSeconds": dict(timer.seconds),
        "totalSeconds": timer.total(),
        "input": {
            "bytes": input_bytes,
            "mimeType": input_mime_type,
            "kind": input_kind,
            **describe(input_info),
        },
        "output": {
            "format": output_format,
            "audioBitrate": audio_bitrate,
            "videoCopied": video_copied,
            **describe(output_info),
        },
        "traceparent": traceparent,
    }
