"""Running ffmpeg and ffprobe."""

import subprocess


class MediaToolError(Exception):
    pass


def run(args: list[str]) -> str:
    """Run ffmpeg/ffprobe; return stdout, or raise with the last line of stderr (the actual error)."""
    proc = subprocess.run(args, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else "no message"
        raise MediaToolError(f"{args[0]} exited with {proc.returncode}: {detail}")
    return proc.stdout


def ffmpeg(*args: str) -> None:
    run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args])
