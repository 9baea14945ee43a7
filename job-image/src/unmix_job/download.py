"""Streaming the input from its presigned GET URL, refusing files over the size cap."""

import urllib.error
import urllib.request
from pathlib import Path

from .exit_codes import BadInput, ExitCode

CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60


class TransferError(Exception):
    """A network failure; transient. Messages never carry the URL: presigned URLs are credentials."""


def download(url: str, dest: Path, max_bytes: int) -> int:
    """Write the body to dest and return its size."""
    too_big = BadInput(ExitCode.INPUT_TOO_LONG, f"the file is larger than the limit of {max_bytes} bytes")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response, dest.open("wb") as out:
            declared = response.headers.get("Content-Length")
            if declared is not None and int(declared) > max_bytes:
                raise too_big
            total = 0
            while chunk := response.read(CHUNK_BYTES):
                total += len(chunk)
                if total > max_bytes:
                    raise too_big
                out.write(chunk)
    except urllib.error.HTTPError as err:
        raise TransferError(f"download failed: HTTP {err.code}") from None
    except urllib.error.URLError as err:
        raise TransferError(f"download failed: {err.reason}") from None
    except (TimeoutError, ConnectionError) as err:
        raise TransferError(f"download failed: {type(err).__name__}") from None
    if declared is not None and total != int(declared):
        raise TransferError(f"download truncated: {total} of {declared} bytes")
    return total
