"""The ``insectml`` command: one subcommand per pipeline step.

Parsing and error reporting live here; each family registers its own subcommands
and imports its heavy libraries only when a command runs, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from insectml import __version__
from insectml.caches import default_caches
from insectml.cliargs import Parser
from insectml.errors import UserError

log = logging.getLogger("insectml")


def build_parser() -> argparse.ArgumentParser:
    from insectml import commands, cv
    from insectml.active import cli as active_cli
    from insectml.families import FAMILIES
    from insectml.monitor import cli as monitor_cli
    from insectml.pretrain import cli as pretrain_cli
    from insectml.project import cli as project_cli
    from insectml.release import cli as release_cli
    from insectml.serving import cli as serving_cli
    from insectml.weights import cli as weights_cli

    parser = Parser(
        prog="insectml",
        description="Train, evaluate, package and serve insect-identification models.",
    )
    parser.add_argument("--version", action="version", version=f"insectml {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.register(sub)
    cv.register(sub)
    for family in FAMILIES.values():
        family.register(sub)
    serving_cli.register(sub)
    release_cli.register(sub)
    project_cli.register(sub)
    weights_cli.register(sub)
    pretrain_cli.register(sub)
    monitor_cli.register(sub)
    active_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    default_caches()
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


if __name__ == "__main__":
    sys.exit(main())
