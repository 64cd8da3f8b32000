"""``insectml monitor``: the command line of :mod:`insectml.monitor`."""

from __future__ import annotations

import argparse
from pathlib import Path

from insectml.cliargs import existing_dir

DRIFT_EXIT = 3  # a test crossed its threshold (0: none did; 2: bad input)
FAMILIES = ("wingbeat", "detector", "fewshot")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "monitor",
        help="compare served traffic (the prediction log) with the data the model was released with",
        description="Read the server's prediction log (LOG: the folder of predictions.jsonl and its rotated "
        "files) and compare it with the reference in RESULTS, the results folder of the served model's family "
        "(<outdir>/<family>): feature drift (wingbeat), embedding drift (images), confidence, unknown-rate and "
        "class-mix drift. Writes OUT/monitor.json and OUT/report.html; prints one line per flagged test. Exit 0: "
        "no drift; 3: a test crossed its threshold; 2: bad input.",
    )
    p.add_argument("log", type=Path, metavar="LOG", help="the prediction log folder (<state>/predictions)")
    p.add_argument(
        "--reference", type=existing_dir, required=True, metavar="RESULTS", help="the family's results folder"
    )
    p.add_argument("--out", type=Path, default=Path("monitor"), help="output folder (default: monitor)")
    p.add_argument(
        "--thresholds",
        default="",
        metavar="NAME=VALUE,…",
        help="override thresholds: alpha (0.01), psi (0.25), ks (0.1), js (0.1), rate (0.05), auc (0.65), "
        "min_records (20)",
    )
    p.add_argument(
        "--family", choices=FAMILIES, help="the log records to read (default: the family of RESULTS, which it must be)"
    )
    p.add_argument(
        "--model", help="the model folder in RESULTS the log's answers came from (default: found from the log)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of subsampling and permutations (default: 0)")
    p.set_defaults(func=_monitor)


def _monitor(args: argparse.Namespace) -> int:
    from insectml.monitor.drift import Thresholds
    from insectml.monitor.run import monitor

    thresholds = Thresholds.parse(args.thresholds)
    outcome = monitor(args.log, args.reference, args.out, thresholds, args.family, args.model, args.seed)
    for test in outcome.flagged:
        print(f"DRIFT {test.line()}")
    print(f"{'drift' if outcome.flagged else 'no drift'}: {outcome.report_path}")
    return DRIFT_EXIT if outcome.flagged else 0
