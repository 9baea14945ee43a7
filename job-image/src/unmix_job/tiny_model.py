"""A tiny HTDemucs, for tests and for `make dev` when the real weights are absent.

`python -m unmix_job.tiny_model DIR` writes it to DIR as a local Demucs repo named `htdemucs`
(the production MODEL_NAME), so the job loads it through the same code as the real weights. Its
output is NOT a real separation: the weights are random. It exists so the whole pipeline (decode,
Demucs's own classes and loader, encode) runs in seconds on a CPU.
"""

import sys
from fractions import Fraction
from pathlib import Path

import torch
from demucs.htdemucs import HTDemucs

from .model_repo import write_local_repo

SOURCES = ["drums", "bass", "other", "vocals"]
SIGNATURE = "a1b2c3d4"


def tiny_htdemucs() -> HTDemucs:
    """HTDemucs with every part of the real architecture (both branches, cross-transformer),
    shrunk to ~30k parameters and 2 s segments so it separates faster than real time."""
    torch.manual_seed(1234)
    return HTDemucs(
        sources=SOURCES,
        channels=4,
        depth=3,
        nfft=1024,
        t_layers=1,
        t_heads=1,
        dconv_comp=1,
        segment=Fraction(2),
    )


def write_tiny_repo(repo: Path, name: str = "htdemucs") -> Path:
    """Writes the tiny model as a local repo (idempotent: an existing one is kept)."""
    if (repo / f"{name}.yaml").exists() and any(repo.glob(f"{SIGNATURE}-*.th")):
        return repo
    return write_local_repo(tiny_htdemucs(), repo, name, SIGNATURE)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m unmix_job.tiny_model DIR", file=sys.stderr)
        return 2
    print(write_tiny_repo(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
