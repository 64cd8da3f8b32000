"""Every pipeline parameter and every model family, declared once.

A :class:`Param` is the one declaration of a pipeline parameter: its JSON-schema type,
default, help and limits, and which CLI step reads it under which flag. Everything else
is derived from it:

- ``nextflow_schema.json`` and ``conf/params.config`` / ``conf/<family>/params.config``
  are generated (``insectml params generate``; a test fails when they are stale);
- the family CLIs' options (:func:`insectml.cliargs.add_param`) and the library configs'
  defaults (:meth:`Group.default`);
- the sweepable set (a family's training-step params);
- a test checks the ``ext.args`` lists of ``conf/<family>/modules.config`` against the flags.

A :class:`Family` is the one descriptor of a model family: its params group, its pipeline
steps, its headline metrics (higher is better), its sweep metric, its demo writer, its MMS handler
and where its CLI registers. ``insectml.families.FAMILIES`` lists them.

This module is a leaf: it imports nothing of insectml, so every layer may use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# JSON-schema keywords a Param may carry besides type, default and description, in the
# order they are written into the schema.
SCHEMA_KEYWORDS = (
    "format",
    "exists",
    "x-weights",
    "enum",
    "x-choices",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "pattern",
)


@dataclass(frozen=True)
class Param:
    """One pipeline parameter. ``steps`` are the CLI steps that read it (``train``),
    ``flag`` the option they read it as (``--epochs``); ``None`` when the workflow uses
    the value itself (an input folder, the list of models to train)."""

    name: str
    type: str | tuple[str, ...]
    default: Any
    help: str
    steps: tuple[str, ...] = ()
    flag: str | None = None
    schema: dict = field(default_factory=dict, compare=False)
    # the Groovy expression of the default in params.config, where it is not a literal
    groovy: str | None = None
    # False: the module passes the flag itself (from an input or meta), not conf's ext.args
    in_args: bool = True

    @property
    def dest(self) -> str | None:
        """The argparse destination of :attr:`flag` (``--batch-size`` → ``batch_size``)."""
        return self.flag.lstrip("-").replace("-", "_") if self.flag else None

    @property
    def choices(self) -> list | None:
        return self.schema.get("enum")

    @property
    def is_file(self) -> bool:
        return self.schema.get("format") in ("file-path", "directory-path", "path")


def param(
    name: str,
    type: str | tuple[str, ...],
    default: Any,
    help: str,
    *,
    steps: tuple[str, ...] | str = (),
    flag: str | None = None,
    groovy: str | None = None,
    in_args: bool = True,
    **schema: Any,
) -> Param:
    """A :class:`Param`; JSON-schema keywords as keyword arguments (``x_choices`` for
    ``x-choices``, ``exists=True`` for a path that must exist, ``x_weights=True`` with
    ``format="path"`` for weights: a file, a folder or an imported NAME)."""
    schema = {k.replace("_", "-") if k.startswith("x_") else k: v for k, v in schema.items()}
    unknown = set(schema) - set(SCHEMA_KEYWORDS)
    if unknown:
        raise TypeError(f"{name}: unknown schema keywords {sorted(unknown)}")
    if isinstance(steps, str):
        steps = (steps,)
    return Param(name, type, default, help, tuple(steps), flag, schema, groovy, in_args)


# An archive / served model name: it becomes a file name and a URL path segment.
NAME_PATTERN = "^[A-Za-z][A-Za-z0-9_-]*$"


def optimiser_params(family: str, weight_decay: float, warmup_epochs: float, of: str = "") -> tuple[Param, ...]:
    """``<family>_weight_decay`` and ``<family>_warmup_epochs`` of the shared training loop,
    read by the family's ``train`` step; ``of`` says whose (" of the neural models")."""
    return (
        param(
            f"{family}_weight_decay",
            "number",
            weight_decay,
            f"AdamW weight decay{of}",
            steps="train",
            flag="--weight-decay",
            minimum=0,
        ),
        param(
            f"{family}_warmup_epochs",
            "number",
            warmup_epochs,
            "epochs of linear learning-rate warm-up before the cosine decay",
            steps="train",
            flag="--warmup-epochs",
            minimum=0,
        ),
    )


def weights_param(family: str, help: str, nullable: bool = False) -> Param:
    """``<family>_weights``: the weights its ``train`` step starts from — a state-dict file, an
    imported folder or NAME (``insectml weights import``), found by ``insectml.weights.store``
    and staged by the pipeline's ``weightsInput`` (so not in ext.args)."""
    return param(
        f"{family}_weights",
        ("string", "null") if nullable else "string",
        None,
        help,
        steps="train",
        flag="--weights",
        in_args=False,  # the module passes its staged input (weightsInput)
        format="path",
        exists=True,
        x_weights=True,
    )


def extra_labels_param(family: str, what: str) -> Param:
    """``<family>_extra_labels``: a labelled Supervisely export of a project ``insectml
    select`` wrote, merged by the family's ``validate`` step into the training side of the
    manifest, with its provenance; staged by the pipeline (so not in ext.args). ``what``
    says what the family does with a class the data lacks."""
    return param(
        f"{family}_extra_labels",
        ("string", "null"),
        None,
        "a labelled Supervisely export of an active-learning project ('insectml select', --al_round) returned by "
        "the labellers: its labelled items join the training split (never val or test), each manifest row "
        f"keeping its round and strategy, recorded in dataset.json and the model card; {what}",
        steps="validate",
        flag="--extra-labels",
        in_args=False,  # the module passes its staged input
        format="directory-path",
        exists=True,
    )


@dataclass(frozen=True)
class Group:
    """A params group: one ``$defs`` entry of the schema and one params.config file."""

    name: str
    title: str
    params: tuple[Param, ...]
    config: str  # the params.config it is generated into, relative to the repository
    note: str = ""  # the config file's header line: what the group is for

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"{self.name} has no parameter {name}")

    def default(self, name: str) -> Any:
        """The declared default of ``name``, for the library configs' field defaults."""
        return self[name].default

    def step(self, step: str) -> tuple[Param, ...]:
        """The params the CLI step ``step`` reads."""
        return tuple(p for p in self.params if step in p.steps)


@dataclass(frozen=True)
class Demo:
    """A further demo set of a family, beside its main one: ``write(out_dir, size, seed)``
    writes it into ``OUT/<folder>``; a size of 0 skips it."""

    folder: str
    write: Callable
    size: Param  # what its size means ('insectml data demo --<flag>')


@dataclass(frozen=True)
class Family:
    """One model family, as the CLI, sweeps, releases and the schema see it."""

    name: str
    help: str  # the CLI's one-line help
    group: Group
    steps: tuple[str, ...]  # the pipeline steps, in order (Nextflow processes <NAME>_<STEP>)
    # evaluation metrics a release reports, all higher-is-better (the release gate compares
    # them so); the first decides minor vs patch releases
    headline: tuple[str, ...]
    sweep_metric: tuple[str, ...]  # path of the validation metric in train_metrics.json
    handler: str  # module of the MMS handler
    cli: str  # module whose register(subparsers) adds 'insectml <name> …'
    demo: Callable  # writes the demo data: demo(out_dir, size, seed), importing its writer lazily
    demo_size: Param  # what the demo's size means ('insectml data demo --<flag>')
    more_demos: tuple[Demo, ...] = ()  # further demo sets 'insectml data demo' writes
    members: tuple[str, ...] = ()  # families that train several models side by side name them
    trains: str = "train"  # the step a sweep fans out

    def sweepable(self, general: Group) -> tuple[str, ...]:
        """The params a sweep may vary: the seed and the training step's values (not its
        files; a param of an earlier step would change data every configuration shares)."""
        own = [p.name for p in self.group.step(self.trains) if not p.is_file]
        return ("seed", *own) if "seed" in {p.name for p in general.params} else tuple(own)

    def register(self, subparsers) -> None:
        importlib.import_module(self.cli).register(subparsers)


def lookup(families: dict[str, Family], name: str) -> Family:
    """The family called ``name``; a :class:`KeyError` naming the choices otherwise."""
    if name not in families:
        raise KeyError(f"{name!r} is not a family (choose from {', '.join(families)})")
    return families[name]
