"""The exit-code contract with the controller (crds/src/exit-codes.ts).

The controller's podFailurePolicy fails a Job at once on a bad-input code and retries the rest.
`python -m unmix_job.exit_codes` prints the table as JSON; a TypeScript test compares it with
the controller's copy.
"""

import json
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    UNDECODABLE_INPUT = 10
    NO_AUDIO_STREAM = 11
    INPUT_TOO_LONG = 12
    OUTPUT_TOO_LARGE = 13
    SILENT_INPUT = 14
    VIDEO_TOO_LARGE = 15


# Anything else (network, out of memory, a bug): the Job may retry. Not in the table, which
# lists only the codes with a meaning of their own.
TRANSIENT_FAILURE = 1


class BadInput(Exception):
    """The input itself cannot be processed: retrying cannot help."""

    def __init__(self, code: ExitCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def table() -> dict[str, int]:
    return {code.name: int(code) for code in ExitCode}


if __name__ == "__main__":
    print(json.dumps(table(), separators=(",", ":")))
