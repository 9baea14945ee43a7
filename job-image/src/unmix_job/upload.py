"""PUT to presigned URLs, with a few quick retries: the GPU work before it is the expensive part.

Bodies are held in memory: outputs are capped at WhatsApp's 16 MB.
"""

import time
import urllib.error
import urllib.request

from .download import TIMEOUT_SECONDS, TransferError
from .logs import log

ATTEMPTS = 3
BACKOFF_SECONDS = 1.0


def upload(url: str, body: bytes, content_type: str, what: str) -> None:
    for attempt in range(1, ATTEMPTS + 1):
        request = urllib.request.Request(
            url,
            data=body,
            method="PUT",
            headers={"Content-Type": content_type, "Content-Length": str(len(body))},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                response.read()
            return
        except urllib.error.HTTPError as err:
            # 4xx (an expired or wrong signature) will not heal by retrying within this run.
            if err.code < 500 or attempt == ATTEMPTS:
                raise TransferError(f"upload of the {what} failed: HTTP {err.code}") from None
            reason = f"HTTP {err.code}"
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            reason = str(getattr(err, "reason", None) or type(err).__name__)
            if attempt == ATTEMPTS:
                raise TransferError(f"upload of the {what} failed: {reason}") from None
        log(f"upload of the {what} failed ({reason}); retrying")
        time.sleep(BACKOFF_SECONDS * attempt)
