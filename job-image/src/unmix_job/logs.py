"""Plain log lines on stdout, each tagged with the trace id of the message being processed."""

import re
import time

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_prefix = ""


def set_trace(traceparent: str | None) -> None:
    """Tag later lines with the W3C trace id, so a log search finds the job from the message's trace."""
    global _prefix
    match = _TRACEPARENT.match(traceparent or "")
    _prefix = f"trace_id={match.group(1)} " if match else ""


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} unmix-job {_prefix}{message}", flush=True)
