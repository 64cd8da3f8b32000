"""One source of truth: every pipeline parameter is declared once (insectml.runparams and
each family's family.py); the schema, the params.config files, the CLI options, the
library configs' defaults and the modules' ext.args must agree with the declarations."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest
from insectml import schema
from insectml.cli import build_parser
from insectml.families import FAMILIES
from insectml.pretrain.params import PARAMS as PRETRAIN
from insectml.runparams import GENERAL
from insectml.spec import Param

ROOT = Path(__file__).resolve().parents[2]
PARSER = build_parser()


def _subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _cli_step(family: str, step: str) -> tuple[str, ...]:
    """The ``insectml`` words of a pipeline step."""
    if step == "package":
        return ("package",)
    return (family, {"pseudolabel": "pseudo-label"}.get(step, step))


def _option(family: str, step: str, flag: str) -> argparse.Action:
    parser = _subparser(PARSER, *_cli_step(family, step))
    found = [a for a in parser._actions if flag in a.option_strings]
    assert found, f"insectml {' '.join(_cli_step(family, step))} has no {flag}"
    return found[0]


def _flagged() -> list[tuple[str, str, Param]]:
    rows = []
    for family in FAMILIES.values():
        for p in (*family.group.params, *GENERAL.params):
            for step in p.steps:
                if p.flag and (p in family.group.params or step in family.steps):
                    rows.append((family.name, step, p))
    # --task pretrain: one step, 'insectml pretrain train'
    rows += [("pretrain", step, p) for p in (*PRETRAIN.params, GENERAL["seed"]) for step in p.steps if p.flag]
    return [(f, s, p) for f, s, p in rows if f != "pretrain" or s == "train"]


def test_generated_files_are_not_stale():
    assert schema.stale(ROOT) == [], "run: bin/insectml params generate"


@pytest.mark.parametrize(("family", "step", "p"), _flagged(), ids=lambda v: getattr(v, "name", v))
def test_cli_option_matches_declaration(family, step, p):
    action = _option(family, step, p.flag)
    if step == "package" and p.flag == "--name":  # one command for every family: NAME defaults to the family's
        assert action.default is None and p.default == family
        return
    if p.type == "boolean":
        assert isinstance(action, argparse._StoreTrueAction)
        return
    assert action.default == p.default
    assert action.choices == p.choices
    expected = {"integer": int, "number": float}.get(p.type, Path if p.is_file else str)
    assert action.type is expected or (p.is_file and action.type.__name__.startswith("existing"))


def _library_configs() -> dict[tuple[str, str], list[type]]:
    from insectml.detector.pseudolabel import PseudoLabelConfig
    from insectml.detector.train import DetectorTrainConfig
    from insectml.detector.validate import DetectorValidateConfig
    from insectml.fewshot.train import FewshotTrainConfig
    from insectml.fewshot.validate import FewshotValidateConfig
    from insectml.wingbeat.frontend import FrontendConfig
    from insectml.wingbeat.train import TrainConfig
    from insectml.wingbeat.train_net import NetConfig
    from insectml.wingbeat.validate import ValidateConfig

    return {
        ("wingbeat", "validate"): [ValidateConfig],
        ("wingbeat", "features"): [FrontendConfig],
        ("wingbeat", "train"): [TrainConfig, NetConfig],
        ("detector", "validate"): [DetectorValidateConfig],
        ("detector", "train"): [DetectorTrainConfig],
        ("detector", "pseudolabel"): [PseudoLabelConfig],
        ("fewshot", "validate"): [FewshotValidateConfig],
        ("fewshot", "train"): [FewshotTrainConfig],
    }


def _defaults(config: type) -> dict:
    """A config dataclass's field defaults, the nested training-loop settings included."""
    out = {}
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            out.update(dataclasses.asdict(value) if dataclasses.is_dataclass(value) else {f.name: value})
    return out


def _library_rows():
    rows = []
    for (family, step), configs in _library_configs().items():
        for p in (*FAMILIES[family].group.step(step), *GENERAL.step(step)):
            for config in configs:
                if p.dest in _defaults(config):
                    rows.append((config, p))
    return rows


@pytest.mark.parametrize(("config", "p"), _library_rows(), ids=lambda v: getattr(v, "name", getattr(v, "__name__", v)))
def test_library_default_matches_declaration(config, p):
    assert _defaults(config)[p.dest] == p.default


# Declared params of a checked step that no library config holds, and why.
NOT_IN_A_CONFIG = {
    "wingbeat_layout": "the CLI turns it into ValidateConfig.labels=None",
}


def test_every_library_knob_of_a_step_is_checked():
    """Each declared param of a step is a field of that step's config (so its default is
    compared above), or is listed with its reason: a new param without its library field,
    or a renamed field, shows here."""
    checked = {p.name for _, p in _library_rows()}
    for (family, step), configs in _library_configs().items():
        for p in FAMILIES[family].group.step(step):
            if p.flag and not p.is_file:
                assert p.name in checked or p.name in NOT_IN_A_CONFIG, f"{p.name}: no field {p.dest} in {configs}"


def _modules_config(family: str) -> str:
    return (ROOT / "conf" / family / "modules.config").read_text()


ARG = re.compile(r"(--[a-z][a-z0-9-]*)\b[^\"\n]*?\$\{(?:params|p)\.([a-z0-9_]+)\}")
SWITCH = re.compile(r"(?:params|p)\.([a-z0-9_]+)\s*\?\s*'(--[a-z][a-z0-9-]*)'")


def _ext_args(family: str) -> dict[str, str]:
    """param name → the flag conf/<family>/modules.config passes it as."""
    text = _modules_config(family)
    found = {name: flag for flag, name in ARG.findall(text)}
    found.update({name: flag for name, flag in SWITCH.findall(text)})
    return found


# What conf/<name>/modules.config passes: each family's params, and pretraining's.
GROUPS = {**{name: (f.group, f.steps) for name, f in FAMILIES.items()}, "pretrain": (PRETRAIN, ("train",))}


@pytest.mark.parametrize("family", list(GROUPS))
def test_ext_args_pass_every_declared_flag(family):
    passed = _ext_args(family)
    group, steps = GROUPS[family]
    shared = [p for p in GENERAL.params if set(p.steps) & set(steps)]  # run-wide, read by steps
    for p in (*group.params, *shared):
        if p.flag and p.in_args:
            assert passed.get(p.name) == p.flag, f"conf/{family}/modules.config: {p.name} not passed as {p.flag}"


@pytest.mark.parametrize("family", list(GROUPS))
def test_ext_args_name_only_declared_params(family):
    declared = schema.all_params()
    text = _modules_config(family)
    for name in set(re.findall(r"\b(?:params|p)\.([a-z][a-z0-9_]*)", text)):
        assert name in declared, f"conf/{family}/modules.config uses undeclared param {name}"
    for name, flag in _ext_args(family).items():
        if declared[name].flag:
            assert flag == declared[name].flag, f"{name} passed as {flag}, declared as {declared[name].flag}"


@pytest.mark.parametrize("config", sorted(ROOT.glob("conf/**/test.config")), ids=str)
def test_profiles_set_only_declared_params(config):
    declared = schema.all_params()
    block = re.search(r"params\s*\{(.*?)\n\s*\}", config.read_text(), re.S)
    names = re.findall(r"^\s*([a-z][a-z0-9_]*)\s*=", block.group(1), re.M) if block else []
    assert all(n in declared for n in names), [n for n in names if n not in declared]


def test_registries_are_the_schema_enums():
    from insectml.detector.models import DETECTORS
    from insectml.fewshot.names import LOSSES, MINERS
    from insectml.wingbeat.models import CLASSICAL_MODELS
    from insectml.wingbeat.nets import NETS

    props = {k: v for g in schema.build_schema()["$defs"].values() for k, v in g["properties"].items()}
    assert props["detector_model"]["enum"] == list(DETECTORS)
    assert props["fewshot_loss"]["enum"] == list(LOSSES)
    assert props["fewshot_miner"]["enum"] == list(MINERS)
    assert props["wingbeat_feature_model"]["enum"] == list(CLASSICAL_MODELS)
    assert props["wingbeat_models"]["x-choices"] == ["features", "rocket", *NETS]
    assert props["task"]["x-choices"] == [*FAMILIES, "pretrain"]


def test_sweepable_params_are_the_training_steps():
    from insectml.sweep import _sweepable

    sweepable = _sweepable()
    assert set(sweepable) == {f.name for f in FAMILIES.values() if f.sweep_metric}
    for name, params in sweepable.items():
        train = {p.name for p in FAMILIES[name].group.step("train")}
        assert set(params) - {"seed"} <= train and "seed" in params


# --al_round's params read by 'insectml select' (the ACTIVE_SELECT process, conf/modules.config).
SELECT = [p for p in GENERAL.params if "select" in p.steps]


@pytest.mark.parametrize("p", SELECT, ids=lambda p: p.name)
def test_select_reads_the_active_learning_params(p):
    action = next(a for a in _subparser(PARSER, "select")._actions if p.flag in a.option_strings)
    choices = list(action.choices) if action.choices is not None else None
    assert (choices, action.type) == (p.choices, int if p.type == "integer" else None)


def test_active_select_ext_args_pass_every_select_flag():
    text = (ROOT / "conf" / "modules.config").read_text()
    block = text[text.index("withName: 'ACTIVE_SELECT'") :].split("withName:", 2)[1]
    passed = {name: flag for flag, name in ARG.findall(block)}
    assert passed == {p.name: p.flag for p in SELECT}


def test_the_strategies_are_the_librarys():
    from insectml.active.strategies import STRATEGIES

    assert GENERAL["al_strategy"].choices == list(STRATEGIES)
