"""What the image installs is exactly what the tests pin, each file checked by its SHA-256."""

import os
import re
import subprocess
from pathlib import Path

import tomllib

JOB_IMAGE = Path(__file__).resolve().parents[1]
LOCK_ENTRY = re.compile(r"^([A-Za-z0-9._-]+)==(\S+) \\\n    --hash=sha256:([0-9a-f]{64})$", re.MULTILINE)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {
        normalized(name): version
        for name, _, version in (line.partition("==") for line in lines if line and not line.startswith("-r"))
    }


def lock(path: Path) -> dict[str, str]:
    text = path.read_text()
    entries = LOCK_ENTRY.findall(text)
    # Every requirement line is a well-formed entry: nothing unhashed slips between them.
    assert len(entries) == sum(1 for line in text.splitlines() if line and not line.startswith((" ", "#")))
    return {normalized(name): version for name, version, _ in entries}


def test_the_image_lock_pins_exactly_requirements_txt() -> None:
    assert lock(JOB_IMAGE / "requirements.lock") == pins(JOB_IMAGE / "requirements.txt")


def test_the_build_lock_is_the_build_backend_the_tests_use() -> None:
    build = lock(JOB_IMAGE / "requirements-build.lock")
    backend = tomllib.loads((JOB_IMAGE / "pyproject.toml").read_text())["build-system"]["requires"]
    assert backend == [f"hatchling=={build['hatchling']}"]
    dev = pins(JOB_IMAGE / "requirements-dev.txt") | pins(JOB_IMAGE / "requirements.txt")
    assert {name: dev.get(name) for name in build} == build


def test_the_dockerfile_installs_only_hashed_locks_and_checks_the_weights() -> None:
    dockerfile = (JOB_IMAGE / "Dockerfile").read_text().replace("\\\n", " ")
    installs = re.findall(r"pip install ([^&\n]+)", dockerfile)
    assert installs, "no pip install found"
    for args in installs:
        # A lock with --require-hashes, or the wheel built here from our own source.
        assert ("--require-hashes" in args and ".lock" in args) or args.strip().endswith(
            "/tmp/wheel/*.whl"
        ), args
    sha = re.search(r"ARG HTDEMUCS_SHA256=([0-9a-f]{64})\n", dockerfile)
    assert sha, "the htdemucs weights need a pinned SHA-256"
    download = re.search(r"curl [^\n]*-o (\S+) \"\$\{HTDEMUCS_URL\}\"([^\n]*)", dockerfile)
    assert download, "the htdemucs download was not found"
    # In the same RUN, chained with &&: a mismatch fails the build before the file is used.
    assert re.search(r"&& sha256sum -c ", download.group(2)), download.group(2)


def test_weights_that_do_not_match_the_pinned_sha256_fail_the_build(tmp_path: Path) -> None:
    # The Dockerfile's own RUN step, run here against a local file with the wrong content.
    dockerfile = (JOB_IMAGE / "Dockerfile").read_text()
    pinned = re.search(r"ARG HTDEMUCS_SHA256=([0-9a-f]{64})\n", dockerfile).group(1)  # type: ignore[union-attr]
    step = re.search(r"\nRUN (mkdir -p /opt/unmix/models.*?)\n\n", dockerfile, re.DOTALL).group(1)  # type: ignore[union-attr]
    bogus = tmp_path / "weights.th"
    bogus.write_bytes(b"not the htdemucs weights")
    env = {"PATH": os.environ["PATH"], "HTDEMUCS_URL": bogus.as_uri(), "HTDEMUCS_SHA256": pinned}
    proc = subprocess.run(
        ["bash", "-c", step.replace("/opt/unmix", str(tmp_path / "opt"))],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "FAILED" in proc.stdout + proc.stderr
    # It stopped at the check: the weights' YAML was never copied beside them, nothing was loaded.
    assert not (tmp_path / "opt/models/htdemucs.yaml").exists()
