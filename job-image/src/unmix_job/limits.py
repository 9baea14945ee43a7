"""Limits that the services and the job image both enforce (crds/src/limits.ts).

`python -m unmix_job.limits` prints the table as JSON; a TypeScript test compares it with the
services' copy, so the two cannot drift.
"""

import json

MIB = 1024 * 1024

# WhatsApp takes audio and video uploads up to "16 MB": read as decimal megabytes, the smaller
# reading, so a reply is never over either.
WHATSAPP_UPLOAD_BYTES = 16_000_000
# WhatsApp delivers user media up to 100 MB (larger arrives as error 131052).
WHATSAPP_INBOUND_BYTES = 100 * MIB
DEFAULT_MAX_INPUT_BYTES = 16 * MIB
DEFAULT_MAX_DURATION_SECONDS = 600
# The largest video picture and frame rate taken (a phone's 4K at 60 fps): decoding cost grows with
# both, and a few MB can declare hours of 8K. Refused at probe, before anything is decoded.
MAX_VIDEO_PIXELS = 3840 * 2160
MAX_VIDEO_FRAME_RATE = 60


def table() -> dict[str, int]:
    return {
        "whatsappUploadBytes": WHATSAPP_UPLOAD_BYTES,
        "whatsappInboundBytes": WHATSAPP_INBOUND_BYTES,
        "defaultMaxInputBytes": DEFAULT_MAX_INPUT_BYTES,
        "defaultMaxDurationSeconds": DEFAULT_MAX_DURATION_SECONDS,
        "maxVideoPixels": MAX_VIDEO_PIXELS,
        "maxVideoFrameRate": MAX_VIDEO_FRAME_RATE,
    }


if __name__ == "__main__":
    print(json.dumps(table()))
