"""Hyperparameter sweeps: expand a sweep file into configurations, then pick the best.

A sweep file (``conf/sweeps/*.yaml``) names a family, the pipeline params to vary and
how::

    task: wingbeat            # the family whose training step fans out
    model: cnn                # wingbeat only: which of its models is swept
    method: grid              # grid: every combination; random: `samples` draws
    samples: 4                # random only
    seed: 7                   # random only: same seed, same configurations
    params:
      wingbeat_lr: [0.001, 0.003]                    # a list: these values
      wingbeat_batch_size: [16, 32]
      # random only: {min: 0.0005, max: 0.01, log: true} draws from a range

``plan`` checks it against the pipeline's schema (every configuration is a valid set of
params) and returns the configurations; the workflow trains one task per configuration,
and ``select`` reads the trained models' validation metric, writes the sweep table and
names the best. Only the best is evaluated on the test split.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
from pathlib import Path

from insectml.errors import ConfigError, InputFileError
from insectml.fileio import open_atomic, write_json_atomic, write_text_atomic
from insectml.report import Figure, Section, Table


def _sweepable() -> dict[str, tuple[str, ...]]:
    """Family -> the params its sweeps may vary (the families that declare a sweep metric)."""
    from insectml.families import FAMILIES
    from insectml.runparams import GENERAL

    return {f.name: f.sweepable(GENERAL) for f in FAMILIES.values() if f.sweep_metric}


def _family(task: str):
    from insectml.families import FAMILIES

    return FAMILIES[task]


def load_sweep(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise InputFileError(path, "sweep file not found")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputFileError(path, "not UTF-8 text") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise InputFileError(path, f"not valid YAML{line}") from None
    if not isinstance(spec, dict):
        raise InputFileError(path, "must be a mapping with task, method and params")
    return spec


def plan(path: Path, schema: Path, params: dict) -> dict:
    """The sweep's configurations: ``{"task", "model", "metric", "configs": [{"id", "params"}]}``.

    Raises a one-line :class:`InputFileError` naming the file and the field at fault.
    """
    from insectml.params import ParamsError, validate_params

    spec = load_sweep(path)

    def bad(field: str, problem: str) -> InputFileError:
        return InputFileError(path, f"{field}: {problem}")

    unknown = sorted(set(spec) - {"task", "model", "method", "samples", "seed", "params"})
    if unknown:
        raise bad(unknown[0], "unknown field (expected task, model, method, samples, seed, params)")
    task = spec.get("task")
    sweepable = _sweepable()
    if task not in sweepable:
        raise bad("task", f"{task!r} cannot be swept (choose from {', '.join(sweepable)})")
    model, members = spec.get("model"), _family(task).members
    if members and model not in members:
        raise bad("model", f"{model!r} is not a {task} model ({', '.join(members)})")
    if not members and model is not None:
        raise bad("model", f"{task} trains one model; only families of several name one in a sweep")
    method = spec.get("method", "grid")
    if method not in ("grid", "random"):
        raise bad("method", f"{method!r} is not grid or random")
    space = spec.get("params")
    if not isinstance(space, dict) or not space:
        raise bad("params", "must map at least one pipeline param to its values")
    for name, values in space.items():
        if name not in sweepable[task]:
            raise bad(f"params.{name}", f"not a {task} training param (sweepable: {', '.join(sweepable[task])})")
        if isinstance(values, dict):
            if method == "grid":
                raise bad(f"params.{name}", "a range needs method: random; grid takes a list of values")
            if set(values) - {"min", "max", "log"} or not {"min", "max"} <= set(values):
                raise bad(f"params.{name}", "a range is {min: A, max: B} with optional log: true")
            lo, hi = values["min"], values["max"]
            if not all(isinstance(v, int | float) for v in (lo, hi)) or lo >= hi or (values.get("log") and lo <= 0):
                raise bad(f"params.{name}", f"range min {lo!r} / max {hi!r} is not a valid (positive for log) range")
        elif not isinstance(values, list) or not values:
            raise bad(f"params.{name}", "must be a non-empty list of values (or a {min, max} range)")

    if method == "grid":
        names = list(space)
        combos = [dict(zip(names, c, strict=True)) for c in itertools.product(*(space[n] for n in names))]
    else:
        samples = spec.get("samples")
        if not isinstance(samples, int) or samples < 1:
            raise bad("samples", "random sweeps need samples: N (a positive integer)")
        rng = random.Random(spec.get("seed", params.get("seed", 42)))
        combos = [{n: _draw(v, rng) for n, v in space.items()} for _ in range(samples)]

    configs, seen = [], set()
    for i, overrides in enumerate(combos, 1):
        key = json.dumps(overrides, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            validate_params(schema, json.dumps({**params, **overrides}))
        except ParamsError as exc:
            raise bad(f"params (configuration {i})", exc.problems[0]) from None
        configs.append({"id": f"c{len(configs) + 1:02d}", "params": overrides})
    return {"task": task, "model": model, "metric": ".".join(_family(task).sweep_metric), "configs": configs}


def _draw(values, rng: random.Random):
    if isinstance(values, list):
        return rng.choice(values)
    lo, hi = values["min"], values["max"]
    if values.get("log"):
        value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    else:
        value = rng.uniform(lo, hi)
    if isinstance(lo, int) and isinstance(hi, int) and not values.get("log"):
        return round(value)
    return float(f"{value:.4g}")


def select(task: str, model_dirs: list[Path], ids: list[str], configs: list[dict], out: Path) -> str:
    """Write ``sweep.csv``, ``sweep.json``, ``sweep.png`` and ``best.txt`` into ``out``;
    return the best configuration's id (highest validation metric; ties: lowest id).
    ``ids[i]`` is the configuration ``model_dirs[i]`` was trained with."""
    sweepable = _sweepable()
    if task not in sweepable:
        raise ConfigError(f"--task: {task} has no sweep metric (choose from {', '.join(sweepable)})")
    metric = _family(task).sweep_metric
    if len(ids) != len(model_dirs):
        raise ConfigError(f"--ids: {len(ids)} ids for {len(model_dirs)} model folders")
    by_id = {c["id"]: c["params"] for c in configs}
    rows = []
    for config_id, d in zip(ids, model_dirs, strict=True):
        metrics = _read(d / "train_metrics.json")
        value = metrics
        for key in metric:
            value = value.get(key) if isinstance(value, dict) else None
        rows.append(
            {
                "config": config_id,
                "params": by_id.get(config_id, {}),
                "val_metric": value,
                "train_seconds": metrics.get("fit_seconds"),
                "best_epoch": metrics.get("best_epoch"),
            }
        )
    if not rows:
        raise ConfigError("no trained models to select from")
    rows.sort(key=lambda r: (-(r["val_metric"] if r["val_metric"] is not None else -math.inf), r["config"]))
    best = rows[0]["config"]
    out.mkdir(parents=True, exist_ok=True)
    names = sorted({k for r in rows for k in r["params"]})
    with open_atomic(out / "sweep.csv") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["config", *names, "val_metric", "train_seconds", "best_epoch"])
        for r in rows:
            writer.writerow(
                [
                    r["config"],
                    *(r["params"].get(n) for n in names),
                    r["val_metric"],
                    r["train_seconds"],
                    r["best_epoch"],
                ]
            )
    summary = {"task": task, "metric": ".".join(metric), "best": best, "configs": rows}
    write_json_atomic(out / "sweep.json", summary)
    write_text_atomic(out / "best.txt", best + "\n")
    _plot(rows, summary["metric"], out / "sweep.png")
    return best


def _read(path: Path) -> dict:
    from insectml.modeldir import read_json

    return read_json(path, "training metrics (is this a trained model folder?)")


def _plot(rows: list[dict], metric: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(rows) + 2), 3.2))
    labels = [r["config"] for r in rows]
    ax.bar(labels, [r["val_metric"] or 0 for r in rows], color=["tab:orange"] + ["tab:blue"] * (len(rows) - 1))
    ax.set(title=f"sweep: {metric} (best first)", ylabel=metric, ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def table(summary: dict) -> Table:
    """The sweep table of ``summary`` (a sweep.json) for a family's report, best first and
    highlighted (the one evaluated on test)."""
    names = sorted({k for r in summary["configs"] for k in r["params"]})
    rows = [
        [r["config"], *(_cell(r["params"].get(n)) for n in names), r["val_metric"], r["train_seconds"], r["best_epoch"]]
        for r in summary["configs"]
    ]
    best = next((i for i, r in enumerate(summary["configs"]) if r["config"] == summary["best"]), None)
    return Table(
        ["config", *names, summary["metric"], "train s", "best epoch"],
        rows,
        caption=f"{len(rows)} configurations; best: {summary['best']} (validation {summary['metric']}), "
        "the only one evaluated on test",
        highlight=best,
    )


def section(path: Path) -> Section:
    """A report section for the sweep whose ``sweep.json`` is ``path``: its table and, when
    it lies beside it, ``sweep.png``."""
    from insectml.modeldir import read_json

    summary = read_json(path, "sweep summary (sweep.json)", keys=("configs", "metric", "best"))
    plot = path.parent / "sweep.png"
    return Section(
        f"Sweep ({len(summary['configs'])} configurations; best: {summary['best']}, evaluated on test)",
        tables=[table(summary)],
        figures=[Figure(plot, f"sweep: validation {summary['metric']} per configuration")] if plot.is_file() else [],
    )


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)
