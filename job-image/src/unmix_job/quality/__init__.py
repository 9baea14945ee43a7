"""How well the music comes out: speech + recorded music mixtures, the real pipeline, scores.

- `mixtures`: espeak-ng speech over Debian's recorded music at a chosen speech-to-music ratio;
- `scores`: SI-SDR against the clean speech, offset, music left in the pauses, loudness, and the
  floors a reply must meet;
- `pipeline`: the `unmix-job` command run against a local presigned-URL-like store;
- `python -m unmix_job.quality mixture|score|table`: the command line (see `__main__`).
"""
