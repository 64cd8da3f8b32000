"""The ``insectml`` command: one subcommand per pipeline step.

Parsing and error reporting live here; each family registers its own subcommands
and imports its heavy libraries only when a command runs, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from insectml import __version__
from insectml.errors import UserError

log = logging.getLogger("insectml")


def _default_caches() -> None:
    # librosa's first call JIT-compiles with numba (~20 s); keep those binaries.
    cache = Path(os.environ.get("INSECTML_CACHE", Path.home() / ".cache" / "insectml"))
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache / "numba"))
    os.environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from insectml import commands
    from insectml.detector import cli as detector_cli
    from insectml.fewshot import cli as fewshot_cli
    from insectml.project import cli as project_cli
    from insectml.release import cli as release_cli
    from insectml.serving import cli as serving_cli
    from insectml.wingbeat import cli as wingbeat_cli

    parser = Parser(
        prog="insectml",
        description="Train, evaluate, package and serve insect-identification models.",
    )
    parser.add_argument("--version", action="version", version=f"insectml {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.register(sub)
    wingbeat_cli.register(sub)
    detector_cli.register(sub)
    fewshot_cli.register(sub)
    serving_cli.register(sub)
    release_cli.register(sub)
    project_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _default_caches()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        result = args.func(args)
    except UserError as exc:
        print(f"insectml: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("insectml: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


def existing_file(value: str) -> Path:
    """argparse type: a path that must exist as a file."""
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value}: file not found")
    return path


def existing_dir(value: str) -> Path:
    """argparse type: a path that must exist as a folder."""
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value}: folder not found")
    return path


def add_manifest_args(parser: argparse.ArgumentParser) -> None:
    """--manifest, --dataset, --root: the output of a family's 'validate' step."""
    parser.add_argument("--manifest", type=Path, required=True, help="manifest.jsonl from 'validate'")
    parser.add_argument("--dataset", type=Path, required=True, help="dataset.json from 'validate'")
    parser.add_argument("--root", type=existing_dir, required=True, help="folder the manifest's paths are relative to")


def add_resume_args(parser) -> None:
    """--resume and --checkpoint-dir: how a training step continues after an interruption."""
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt if it exists")
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        metavar="DIR",
        help="keep the per-epoch checkpoint in DIR/<settings key>/ instead of OUT/checkpoints and "
        "continue from it when the same settings and data are trained again (a retried cluster job; "
        "after the last epoch the retry only reloads the best weights)",
    )


if __name__ == "__main__":
    sys.exit(main())
