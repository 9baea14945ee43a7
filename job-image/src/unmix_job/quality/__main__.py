"""Command line:

python -m unmix_job.quality mixture --out-dir DIR --seconds S --snr-db X [--language en] [--seed N]
    writes DIR/speech.wav, DIR/mix.wav (float WAV) and DIR/note.ogg (a WhatsApp voice note);
    prints {"speech": path, "mix": path, "note": path, "snrDb": X}
python -m unmix_job.quality score --speech SPEECH.wav --mix MIX --reply REPLY [--floors FORMAT]
    prints {"offsetMs": ..., "siSdrMixDb": ..., ..., "loudnessDeltaLu": ...}; with --floors (the
    reply's output format), also "failures": the floors of DeepFilterNet3 at the mix's ratio that
    the reply misses (the same check as the tests), one line each, [] when it passes
python -m unmix_job.quality table [--seconds S] [--languages ...] [--snr-db ...] [--formats ...]
    runs every mixture through unmix-job with every engine available here; prints the table
"""

import argparse
import json
import sys
from pathlib import Path

from .audio import read
from .mixtures import VOICES, MusicMissing, make_mixture, write_mixture
from .pipeline import engines
from .report import cases, format_row, header, rows
from .scores import DFN3_FLOORS, failures, score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unmix_job.quality")
    commands = parser.add_subparsers(dest="command", required=True)

    mixture = commands.add_parser("mixture", help="speech over recorded music, and the voice note of it")
    mixture.add_argument("--out-dir", type=Path, required=True)
    mixture.add_argument("--seconds", type=float, required=True)
    mixture.add_argument("--snr-db", type=float, required=True, help="speech-to-music ratio")
    mixture.add_argument("--language", choices=sorted(VOICES), default="en")
    mixture.add_argument("--seed", type=int, default=0)

    scoring = commands.add_parser("score", help="score a reply against the clean speech")
    scoring.add_argument("--speech", type=Path, required=True)
    scoring.add_argument("--mix", type=Path, required=True)
    scoring.add_argument("--reply", type=Path, required=True)
    formats = sorted({fmt for fmt, _ in DFN3_FLOORS})
    scoring.add_argument("--floors", choices=formats, help="the reply's format: check it against its floors")
    scoring.add_argument("--snr-db", type=float, help="the mix's speech-to-music ratio, with --floors")

    table = commands.add_parser("table", help="the quality table through the real pipeline")
    table.add_argument("--seconds", type=float, default=12.0)
    table.add_argument("--languages", nargs="+", choices=sorted(VOICES), default=list(VOICES))
    table.add_argument("--snr-db", type=float, nargs="+", default=[5.0, 0.0, -5.0])
    table.add_argument("--formats", nargs="+", choices=["ogg-opus", "m4a"], default=["ogg-opus", "m4a"])

    args = parser.parse_args(argv)
    try:
        if args.command == "mixture":
            made = make_mixture(args.seconds, args.snr_db, args.language, args.seed)
            paths = write_mixture(made, args.out_dir)
            print(json.dumps({**{k: str(p.resolve()) for k, p in paths.items()}, "snrDb": args.snr_db}))
        elif args.command == "score":
            result = score(read(args.speech), read(args.mix), read(args.reply))
            out: dict[str, object] = dict(result.to_json())
            if args.floors:
                out["failures"] = failures(result, DFN3_FLOORS[(args.floors, args.snr_db)])
            print(json.dumps(out))
        else:
            found, skipped = engines()
            print(header(), flush=True)
            for row in rows(found, cases(args.languages, args.snr_db, args.formats), args.seconds):
                print(format_row(row), flush=True)
            for line in skipped:
                print(line)
    except MusicMissing as err:
        print(f"quality: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
