"""argparse pieces every ``insectml`` command uses: the one-line-error parser, path
types, the options derived from the parameter declarations, and the option blocks
shared by the families (manifest inputs, the training loop).

A leaf below every CLI module: it imports only :mod:`insectml.spec`, never torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from insectml.spec import Group, Param


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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


_TYPES = {"integer": int, "number": float, "string": str}


def option_kwargs(p: Param) -> dict:
    """The ``add_argument`` keywords of a declared param: type, default, choices, help."""
    if p.type == "boolean":
        return {"action": "store_true", "help": p.help}
    kind = next(t for t in (p.type if isinstance(p.type, tuple) else (p.type,)) if t != "null")
    kwargs = {"type": Path if p.is_file else _TYPES[kind], "default": p.default}
    if p.choices:
        kwargs["choices"] = p.choices
    shown = "" if p.default in (None, "") else f" (default: {p.default})"
    kwargs["help"] = (p.help + shown).replace("%", "%%")
    return kwargs


def add_option(parser, p: Param, **overrides) -> argparse.Action:
    """Add the option of a declared param (its flag, type, default, choices, help);
    ``overrides`` replace a keyword, e.g. ``type=existing_dir``."""
    if p.flag is None:
        raise ValueError(f"{p.name} has no CLI flag")
    return parser.add_argument(p.flag, **{**option_kwargs(p), **overrides})


def add_param(parser, group: Group, name: str, **overrides) -> argparse.Action:
    """:func:`add_option` of the param ``name`` of ``group``."""
    return add_option(parser, group[name], **overrides)


def add_step_params(parser, group: Group, step: str, skip: tuple[str, ...] = ()) -> None:
    """Add the option of every declared param that CLI step ``step`` reads."""
    for p in group.step(step):
        if p.flag and p.name not in skip:
            add_param(parser, group, p.name)


def step_settings(args: argparse.Namespace, group: Group, step: str, skip: tuple[str, ...] = ()) -> dict:
    """The parsed values of the params ``step`` reads (:func:`add_step_params`), keyed by
    their destination: the keywords of the step's library config."""
    return {p.dest: getattr(args, p.dest) for p in group.step(step) if p.flag and p.name not in skip}


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


# The shared training loop's settings: a family declares <family>_<name> for those it sets
# (few-shot batches are classes x images per class, so it declares no batch size).
LOOP_PARAMS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "patience")


def add_loop_args(parser, group: Group, general: Group) -> None:
    """The training loop's options for a family: its declared epochs, batch size, learning
    rate, weight decay, warm-up and patience, then seed, threads, resume, checkpoints, device."""
    declared = {p.name for p in group.params}
    for name in LOOP_PARAMS:
        if f"{group.name}_{name}" in declared:
            add_param(parser, group, f"{group.name}_{name}")
    add_param(parser, general, "seed")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    add_resume_args(parser)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")


def loop_settings(args: argparse.Namespace) -> dict:
    """The parsed loop options as ``LoopConfig`` keywords (from :func:`add_loop_args`)."""
    keys = (*LOOP_PARAMS, "seed", "threads", "resume", "checkpoint_dir", "device")
    return {k: getattr(args, k) for k in keys if hasattr(args, k)}
