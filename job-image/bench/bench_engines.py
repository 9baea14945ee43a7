"""Speed and memory of the job's steps with the real htdemucs architecture (random weights).

The model is built with the hyperparameters of the released htdemucs (what
`get_model("htdemucs")` builds from 955717e8-8726e21a.th), saved in a local Demucs repo and
loaded back through the job's own Separator, so only the weights differ from production; speed
does not depend on them. Each step runs the job's own function: decode (ffmpeg to 44.1 kHz
float WAV), separate (Demucs in bounded windows), encode (to OUTPUT_FORMAT).

    DEVICE=cuda python bench/bench_htdemucs.py --durations 10 60 300

Reports per step: wall seconds, real-time factor (seconds per second of media; 0.01 = 100x real
time), peak RSS of the process and its ffmpeg children, and on CUDA the peak GPU memory.
"""

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from demucs.htdemucs import HTDemucs

from unmix_job.config import OutputFormat
from unmix_job.decode import decode
from unmix_job.encode import encode
from unmix_job.media_tool import ffmpeg
from unmix_job.model_repo import write_local_repo
from unmix_job.probe import check_input, probe
from unmix_job.separate import DemucsParams, Separator, device_name, resolve_device

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


def real_htdemucs() -> HTDemucs:
    torch.manual_seed(0)
    return HTDemucs(**HTDEMUCS_KWARGS)


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


@contextmanager
def measured(results: dict[str, dict[str, float]], name: str, media_seconds: float) -> Iterator[None]:
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], _rss_bytes(os.getpid()))

    sampler = threading.Thread(target=sample, daemon=True)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    sampler.start()
    begin = time.perf_counter()
    yield
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - begin
    done.set()
    sampler.join()
    results[name] = {
        "seconds": round(seconds, 3),
        "rtf": round(seconds / media_seconds, 4),
        "peakRssMiB": round(max(peak[0], _rss_bytes(os.getpid())) / 2**20),
    }
    if cuda:
        results[name]["peakGpuMiB"] = round(torch.cuda.max_memory_allocated() / 2**20)


def make_input(path: Path, seconds: float) -> None:
    """A voice-note-like input: a chord and pink noise, mono Opus (content does not change speed)."""
    chord = "0.2*sin(2*PI*220*t)+0.15*sin(2*PI*277.2*t)+0.1*sin(2*PI*329.6*t)"
    ffmpeg(
        "-f", "lavfi", "-i", f"aevalsrc={chord}:s=48000:d={seconds}",
        "-f", "lavfi", "-i", f"anoisesrc=c=pink:a=0.05:d={seconds}",
        "-filter_complex", "amix=inputs=2", "-ac", "1", "-c:a", "libopus", "-b:a", "32k", str(path),
    )  # fmt: skip


def run(
    durations: list[float], output_format: OutputFormat, chunk_seconds: float, work: Path
) -> dict[str, Any]:
    device = resolve_device(os.environ.get("DEVICE", "auto"))
    repo = write_local_repo(real_htdemucs(), work / "models", "htdemucs", "bench001")
    report: dict[str, Any] = {
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "outputFormat": output_format,
        "chunkSeconds": chunk_seconds,
        "runs": [],
    }
    load: dict[str, dict[str, float]] = {}
    params = DemucsParams(segment=None, overlap=0.25, shifts=1, chunk_seconds=chunk_seconds)
    with measured(load, "loadModel", 1.0):
        separator = Separator("htdemucs", repo, device, params)
    report["loadModelSeconds"] = load["loadModel"]["seconds"]
    report["parameters"] = sum(p.numel() for p in separator.model.parameters())

    for seconds in durations:
        source = work / f"input-{seconds:g}.ogg"
        make_input(source, seconds)
        steps: dict[str, dict[str, float]] = {}
        with measured(steps, "probe", seconds):
            info = probe(source)
            stream = check_input(info, max_duration=3600)
        with measured(steps, "decode", seconds):
            audio = decode(source, stream, work / "mix.wav", max_duration=3600)
        with measured(steps, "separate", seconds):
            vocals = separator.separate(audio, work / "vocals.wav")
        with measured(steps, "encode", seconds):
            encode(output_format, vocals.path, vocals.peak, audio.duration, source, info, False, work)
        report["runs"].append({"mediaSeconds": seconds, "steps": steps})
    return report


def table(report: dict[str, Any]) -> str:
    lines = [
        f"device: {report['device']} (torch {report['torch']}, {report['threads']} threads), "
        f"{report['parameters'] / 1e6:.1f} M parameters, model load {report['loadModelSeconds']:.2f} s",
        "",
        "| media | step | seconds | RTF | x real time | peak RSS MiB | peak GPU MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for run_ in report["runs"]:
        for name, s in run_["steps"].items():
            speed = f"{1 / s['rtf']:.1f}" if s["rtf"] else "-"
            lines.append(
                f"| {run_['mediaSeconds']:g} s | {name} | {s['seconds']:.2f} | {s['rtf']:.4f} | {speed} "
                f"| {s['peakRssMiB']} | {s.get('peakGpuMiB', '-')} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--durations", type=float, nargs="+", default=[10, 60, 300])
    parser.add_argument("--format", default="ogg-opus", choices=["ogg-opus", "mp3", "m4a", "mp4"])
    parser.add_argument("--chunk-seconds", type=float, default=180.0)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="unmix-bench-", dir=os.environ.get("WORK_DIR")) as work:
        report = run(args.durations, args.format, args.chunk_seconds, Path(work))
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
