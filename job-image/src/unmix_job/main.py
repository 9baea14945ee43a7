"""Entry point: download → probe → decode → separate → encode → upload → manifest.

Exit status per unmix_job.exit_codes; on failure a one-line reason goes to TERMINATION_LOG for
the controller. Nothing is uploaded unless every step before the upload succeeded.
"""

import json
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Mapping
from pathlib import Path

from . import manifest, tracing
from .config import ConfigError, Settings
from .decode import decode
from .download import download
from .encode import encode
from .exit_codes import TRANSIENT_FAILURE, BadInput, ExitCode
from .logs import log, set_trace
from .models import MODELS
from .probe import check_input, probe
from .separate import load_separator
from .upload import upload

DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def main() -> None:
    sys.exit(run(os.environ))


def run(env: Mapping[str, str]) -> int:
    try:
        settings = Settings.from_env(env)
    except ConfigError as err:
        path = Path(env.get("TERMINATION_LOG", "").strip() or DEFAULT_TERMINATION_LOG)
        return _fail(path, TRANSIENT_FAILURE, f"job misconfigured: {err}")
    set_trace(settings.traceparent)
    # None when no OTLP endpoint is set: then the OpenTelemetry SDK is not even imported.
    trace = tracing.start(env, settings.traceparent)
    timer = manifest.StepTimer()
    code, reason, error_type = ExitCode.OK, None, None
    try:
        process(settings, timer)
    except BadInput as err:
        code, reason, error_type = err.code, err.reason, type(err).__name__
    except Exception as err:
        error_type = type(err).__name__
        if _gpu_out_of_memory(err):
            code, reason = TRANSIENT_FAILURE, "the GPU ran out of memory"
        else:
            traceback.print_exc(file=sys.stdout)
            first_line = (str(err).splitlines() or [""])[0]
            code, reason = TRANSIENT_FAILURE, f"{type(err).__name__}: {first_line}"
    if trace is not None:
        # The reason stays out of the spans: it could quote a URL; the exception type goes in.
        trace.finish(
            timer.spans,
            int(code),
            error_type,
            {
                "unmix.job.input_kind": settings.input_kind,
                "unmix.job.output_format": settings.output_format,
                "unmix.job.model": settings.model_name,
            },
        )
    if reason is not None:
        return _fail(settings.termination_log, code, reason)
    return ExitCode.OK


def process(settings: Settings, timer: manifest.StepTimer) -> None:
    model = MODELS[settings.model_name]
    log(
        f"start: kind={settings.input_kind} mime={settings.input_mime_type or '-'} "
        f"format={settings.output_format} model={model.id} engine={model.engine} device={settings.device}"
    )
    work = Path(tempfile.mkdtemp(prefix="unmix-", dir=settings.work_dir))
    try:
        source = work / "input"
        with timer.step("download"):
            input_bytes = download(settings.input_url, source, settings.max_input_bytes)
        with timer.step("probe"):
            info = probe(source)
            stream = check_input(info, settings.max_duration_seconds)
        # The model before decoding: the input is decoded straight to its engine's format.
        with timer.step("loadModel"):
            separator = load_separator(
                model, device=settings.device, repo=settings.model_repo, demucs=settings.demucs
            )
        with timer.step("decode"):
            audio = decode(
                source,
                stream,
                work / "mix.wav",
                settings.max_duration_seconds,
                separator.sample_rate,
                separator.channels,
            )
        log(f"input: {input_bytes} bytes, {info.container}, {stream.codec}, {audio.duration:.2f} s")

        with timer.step("separate"):
            speech = separator.separate(audio, work / "speech.wav")
        with timer.step("encode"):
            keep_video = settings.input_kind == "video"
            out = encode(
                settings.output_format,
                speech,
                audio.duration,
                source,
                info,
                keep_video,
                work,
            )
            out_info = probe(out.path)
        size = out.path.stat().st_size
        if size > settings.max_output_bytes:
            raise BadInput(
                ExitCode.OUTPUT_TOO_LARGE,
                f"the result is {size} bytes, over the limit of {settings.max_output_bytes} bytes",
            )
        with timer.step("upload"):
            upload(settings.output_url, out.path.read_bytes(), out.mime_type, "result")
        result = manifest.build(
            model=model,
            device=separator.device,
            device_name=separator.device_name,
            versions=separator.versions,
            media_seconds=audio.duration,
            input_bytes=input_bytes,
            input_mime_type=settings.input_mime_type,
            input_kind=settings.input_kind,
            input_info=info,
            output_format=settings.output_format,
            mime_type=out.mime_type,
            size_bytes=size,
            audio_bitrate=out.audio_bitrate,
            video_copied=out.video_copied,
            output_info=out_info,
            timer=timer,
            traceparent=settings.traceparent,
        )
        upload(settings.manifest_url, json.dumps(result).encode(), "application/json", "manifest")
        log(
            f"done: {size} bytes {out.mime_type}, {audio.duration:.2f} s of media, "
            f"separation RTF {result['realTimeFactor']}, total {result['totalSeconds']} s"
        )
    finally:
        # The input and every intermediate are deleted, whatever happened (data policy).
        shutil.rmtree(work, ignore_errors=True)


def _gpu_out_of_memory(err: Exception) -> bool:
    # torch is imported by the Demucs engine alone: without it, no error can be torch's.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(err, torch.cuda.OutOfMemoryError)


def _fail(termination_log: Path, code: int, reason: str) -> int:
    line = " ".join(reason.split())[:1000]
    log(f"failed (exit {code}): {line}")
    try:
        termination_log.write_text(line + "\n")
    except OSError as err:
        log(f"could not write the termination log {termination_log}: {err.strerror}")
    return code
