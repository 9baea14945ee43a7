"""Running ffmpeg and ffprobe."""

import subprocess

# The containers ffmpeg may open: what WhatsApp delivers (Ogg, MP3, MP4/M4A/3GP as "mov", ADTS
# AAC, AMR) and the job's own WAV intermediates. Left to guess, ffmpeg would also take a DASH or HLS
# manifest or a concat list, whose entries open other files (and, nested, other protocols): a
# "voice note" could make the pod read its own files. Every one listed is self-contained.
INPUT_FORMATS = "ogg,mp3,mov,aac,amr,wav"
# Inputs are local files only: no network, no pipes, no data: URLs, at any nesting level.
SAFE_INPUT = ("-protocol_whitelist", "file", "-format_whitelist", INPUT_FORMATS)
REFUSED_FORMAT = "Format not on whitelist"
# Bounds on the steps that read the user's file (a crafted file can make a demuxer crawl): far
# above what any input within the limits takes, well under the Job's deadline.
PROBE_TIMEOUT_SECONDS = 60
DECODE_TIMEOUT_SECONDS = 300


class MediaToolError(Exception):
    def __init__(self, message: str, refused_format: bool = False) -> None:
        super().__init__(message)
        # True when ffmpeg refused the input's container (a manifest, a playlist, an exotic format).
        self.refused_format = refused_format


def run(args: list[str], timeout: float | None = None) -> str:
    """Run ffmpeg/ffprobe; return stdout, or raise with the last line of stderr (the actual error)."""
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise MediaToolError(f"{args[0]} took more than {timeout} s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else "no message"
        raise MediaToolError(
            f"{args[0]} exited with {proc.returncode}: {detail}", REFUSED_FORMAT in proc.stderr
        )
    return proc.stdout


def ffmpeg(*args: str, timeout: float | None = None) -> None:
    run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], timeout)


def ffprobe(path: str) -> str:
    """ffprobe's JSON description of a file's container and streams."""
    args = ["ffprobe", "-v", "error", *SAFE_INPUT, "-show_format", "-show_streams", "-of", "json", path]
    return run(args, PROBE_TIMEOUT_SECONDS)


def input_file(path: str) -> list[str]:
    """ffmpeg's arguments to read one input file, with the allowlists above."""
    return [*SAFE_INPUT, "-i", path]
