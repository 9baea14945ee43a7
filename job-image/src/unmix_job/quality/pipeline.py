"""Running the real `unmix-job` command on a file, as the controller's Job would, and collecting
the reply and its manifest: a local HTTP server stands in for the presigned URLs."""

import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..config import OutputFormat
from . import cache_dir

HTDEMUCS_WEIGHTS = "955717e8-8726e21a.th"  # the released htdemucs checkpoint the image bakes in


@dataclass(frozen=True)
class Engine:
    model_name: str  # MODEL_NAME
    model_repo: Path | None = None  # MODEL_REPO


@dataclass(frozen=True)
class Reply:
    path: Path
    manifest: dict


def engines() -> tuple[list[Engine], list[str]]:
    """The engines to measure here, and a line for each one skipped and why. DeepFilterNet3's
    weights ship in its wheel; htdemucs runs only where the real weights were put in the cache."""
    found, skipped = [Engine("dfn3")], []
    weights = cache_dir() / "models/htdemucs"
    if (weights / HTDEMUCS_WEIGHTS).is_file():
        found.append(Engine("htdemucs", weights))
    else:
        skipped.append(
            f"htdemucs: skipped, no real weights in {weights} ({HTDEMUCS_WEIGHTS} cannot be downloaded here; "
            "a random-weight model would measure nothing)"
        )
    return found, skipped


@contextmanager
def _serve(objects: dict[str, bytes]) -> Iterator[str]:
    """GET and PUT of whole objects by key; the query (the "signature") is ignored."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _key(self) -> str:
            return self.path.split("?", 1)[0].lstrip("/")

        def do_GET(self) -> None:
            body = objects.get(self._key())
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            objects[self._key()] = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def run_job(engine: Engine, source: Path, output_format: OutputFormat, dest: Path) -> Reply:
    """Send `source` through `unmix-job` (audio input); the reply is written to `dest`."""
    objects = {"input": source.read_bytes()}
    with tempfile.TemporaryDirectory(prefix="unmix-quality-") as tmp, _serve(objects) as base:
        termination = Path(tmp) / "termination-log"
        env = {
            **os.environ,
            "INPUT_URL": f"{base}/input?X-Amz-Signature=0",
            "OUTPUT_URL": f"{base}/output?X-Amz-Signature=0",
            "MANIFEST_URL": f"{base}/manifest?X-Amz-Signature=0",
            "INPUT_KIND": "audio",
            "OUTPUT_FORMAT": output_format,
            "MODEL_NAME": engine.model_name,
            "WORK_DIR": tmp,
            "TERMINATION_LOG": str(termination),
        }
        env.pop("MODEL_REPO", None)
        if engine.model_repo is not None:
            env["MODEL_REPO"] = str(engine.model_repo)
        command = Path(sys.executable).parent / "unmix-job"
        proc = subprocess.run([str(command)], env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            reason = termination.read_text().strip() if termination.exists() else proc.stdout[-2000:]
            raise RuntimeError(f"unmix-job ({engine.model_name}) exited with {proc.returncode}: {reason}")
    dest.write_bytes(objects["output"])
    return Reply(dest, json.loads(objects["manifest"]))
