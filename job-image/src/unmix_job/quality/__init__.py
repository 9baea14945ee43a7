"""How well the music comes out: speech + recorded music mixtures, the real pipeline, scores.

- `mixtures`: espeak-ng speech over Debian's recorded music at a chosen speech-to-music ratio;
- `scores`: SI-SDR against the clean speech, offset, music left in the pauses, loudness, and the
  floors a reply must meet;
- `pipeline`: the `unmix-job` command run against a local presigned-URL-like store;
- `report`: the table of every mixture through every engine and output format;
- `audio`: decoding anything with ffmpeg to 48 kHz float, the encodings users send, loudness;
- `python -m unmix_job.quality mixture|score|table`: the command line (see `__main__`).
"""

import os
from pathlib import Path


def cache_dir() -> Path:
    """$UNMIX_CACHE, default <repo>/.cache: where the scripts put the venv, the music and weights."""
    return Path(os.environ.get("UNMIX_CACHE") or Path(__file__).resolve().parents[4] / ".cache")
