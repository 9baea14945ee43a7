"""Writing a model in the folder layout that `demucs.pretrained.get_model(name, repo=...)` reads.

The image holds the official htdemucs files in this layout; the tests and the benchmark use it
for models they build themselves (weights cannot be downloaded there), so that loading goes
through the same Demucs code as in production.
"""

from pathlib import Path

from demucs.states import get_state, save_with_checksum
from torch import nn


def write_local_repo(model: nn.Module, repo: Path, name: str, signature: str) -> Path:
    """Save `model` as `<signature>-<sha256 prefix>.th` plus a one-model bag `<name>.yaml`."""
    repo.mkdir(parents=True, exist_ok=True)
    args, kwargs = model._init_args_kwargs  # recorded by demucs's @capture_init
    package = {
        "klass": model.__class__,
        "args": args,
        "kwargs": kwargs,
        # Half precision, as the released checkpoints are stored.
        "state": get_state(model, None, half=True),
    }
    save_with_checksum(package, repo / f"{signature}.th")
    (repo / f"{name}.yaml").write_text(f"models: ['{signature}']\n")
    return repo
