"""Environment parsing: defaults, and refusals with a reason an SRE can act on."""

from pathlib import Path

import pytest

from unmix_job.config import ConfigError, Settings
from unmix_job.limits import WHATSAPP_UPLOAD_BYTES

BASE = {
    "INPUT_URL": "http://store/in",
    "OUTPUT_URL": "http://store/out",
    "MANIFEST_URL": "http://store/manifest",
    "INPUT_KIND": "video",
    "OUTPUT_FORMAT": "mp4",
}


def test_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.model_name == "htdemucs" and settings.model_repo is None
    assert settings.device == "auto"
    assert (settings.segment, settings.overlap, settings.shifts) == (None, 0.25, 1)
    assert settings.max_output_bytes == WHATSAPP_UPLOAD_BYTES
    assert settings.termination_log == Path("/dev/termination-log")


def test_values_are_read() -> None:
    settings = Settings.from_env(
        {**BASE, "DEMUCS_SEGMENT": "6.5", "DEMUCS_OVERLAP": "0.1", "DEMUCS_SHIFTS": "0", "DEVICE": "cuda",
         "MODEL_REPO": "/opt/unmix/models", "MAX_DURATION_SECONDS": "900", "WORK_DIR": "/scratch"}
    )  # fmt: skip
    assert (settings.segment, settings.overlap, settings.shifts, settings.device) == (6.5, 0.1, 0, "cuda")
    assert settings.model_repo == Path("/opt/unmix/models")
    assert settings.max_duration_seconds == 900 and settings.work_dir == Path("/scratch")
    assert Settings.from_env({**BASE, "MODEL_NAME": "dfn3"}).model_name == "dfn3"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"INPUT_URL": ""}, "INPUT_URL is required"),
        ({"OUTPUT_FORMAT": "wav"}, "OUTPUT_FORMAT must be one of"),
        ({"INPUT_KIND": "image"}, "INPUT_KIND must be one of"),
        ({"DEVICE": "mps"}, "DEVICE must be one of"),
        ({"DEMUCS_OVERLAP": "0.5"}, "DEMUCS_OVERLAP must be between"),
        ({"DEMUCS_SHIFTS": "-1"}, "DEMUCS_SHIFTS must be an integer"),
        ({"MAX_INPUT_BYTES": "lots"}, "MAX_INPUT_BYTES must be an integer"),
        ({"DEMUCS_SEGMENT": "long"}, "DEMUCS_SEGMENT must be a number"),
        ({"MODEL_NAME": "htdemucs_ft"}, "MODEL_NAME must be one of htdemucs, dfn3"),
    ],
)
def test_bad_values_are_refused(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**BASE, **override})
