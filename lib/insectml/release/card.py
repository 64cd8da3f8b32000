"""Model cards: what a released model is, how good (with 95 % intervals, against its
baseline), how it was chosen, from what, and for what not."""

from __future__ import annotations

import json
from pathlib import Path

from insectml import lineage as lineage_mod
from insectml.fileio import write_text_atomic
from insectml.release.candidate import Candidate
from insectml.release.gate import GateResult, verdict_text

INTENDED_USE = {
    "wingbeat": "Identify the mosquito species of an optical wingbeat sensor recording (WAV, one insect "
    "passing the sensor) among the species it was trained on.",
    "detector": "Find insects in field and trap images and box the target species; a first pass for human "
    "review and counting, not an unsupervised pest-control trigger.",
    "fewshot": "Match an insect image to the nearest of many similar classes known from a few examples, "
    "answer 'unknown' below the calibrated threshold, and group unlabelled images for review.",
}
KNOWN_LIMITS = {
    "wingbeat": "Only the listed species; recordings must match the training sample rate (or be resampled). "
    "Accuracy measured on the held-out groups of the training data, not on other sensors or climates.",
    "detector": "Trained partly on pseudo-labels from a generic detector; boxes for species images without "
    "box labels can be wrong. Small insects (< 20 px) and crowded traps are under-detected.",
    "fewshot": "Classes that differ only by features the embedder never learnt (unseen body plans) are "
    "confused; the unknown threshold is calibrated on validation classes and shifts with new ones.",
}

SELECTED_BY = {
    "cv_macro_f1": "the highest out-of-fold (cross-validation) macro-F1",
    "val_macro_f1": "the highest validation macro-F1",
}


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _interval(ci: dict | None) -> str:
    return "—" if not ci else f"[{_num(ci.get('low'))}, {_num(ci.get('high'))}]"


def _baseline_md(c: Candidate, gate: GateResult) -> str:
    """The verdict against the baseline and whether the gate was overridden, as markdown."""
    beats = {True: "yes", False: "no", None: "not compared"}[(c.verdict or {}).get("beats_baseline")]
    override = "used (released although it does not beat its baseline)" if gate.below_baseline_allowed else "not used"
    return f"""{verdict_text(c.verdict)}

- beats its baseline: {beats}
- `--allow-below-baseline`: {override}"""


def _selection_md(selection: dict) -> str:
    """How the model was chosen among those trained, as markdown."""
    if not selection:
        return "Not recorded for this family (its pipeline compares no models to choose one)."
    how = SELECTED_BY.get(selection.get("selected_by"), f"`{selection.get('selected_by')}`")
    lines = [f"`{selection.get('model')}`, chosen by {how} among the models compared; test scores never chose.", ""]
    cv = selection.get("cv")
    if cv:
        lines.append(
            f"- cross-validation: {cv.get('k')} folds by recording group, fold seed {cv.get('fold_seed')} "
            f"({cv.get('reason')}); out-of-fold macro-F1 {_num((cv.get('macro_f1') or {}).get('value'))} "
            f"{_interval(cv.get('macro_f1'))}"
        )
        lines.append(f"- rule: {cv.get('rule')}")
    if selection.get("sweep_config"):
        lines.append(f"- hyperparameters: sweep configuration `{selection['sweep_config']}`")
    return "\n".join(lines)


def _active_learning_md(rounds: list[dict]) -> str:
    """The active-learning rounds merged into the training data, as markdown."""
    if not rounds:
        return "None: every training label came with the data."
    lines = [
        "Rows labelled in these rounds (samples `insectml select` picked from unlabelled data, labelled in "
        "Supervisely) joined the training split only; val and test are the data's own.",
        "",
        "| round | strategy | rows | export |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.get('round', '—')} | {r.get('strategy') or '—'} | {r.get('n_rows')} | `{r.get('export')}` |"
        for r in rounds
    ]
    return "\n".join(lines)


def write_card(c: Candidate, name: str, version: str, gate: GateResult, previous: str | None, out: Path) -> list[Path]:
    """Write ``model_card.json`` and ``model_card.md`` into ``out``; return them."""
    out.mkdir(parents=True, exist_ok=True)
    code = c.lineage.get("code", {})
    data = c.lineage.get("data", {})
    card = {
        "name": name,
        "version": version,
        "family": c.family,
        "released": lineage_mod.now(),
        "previous_version": previous,
        "bump": gate.bump,
        "headline": c.headline,
        "labels": c.labels,
        "archive": c.archive.name,
        "metrics": c.metrics,
        "intervals": c.intervals,
        "comparison": [{"metric": m, "previous": p, "new": n} for m, p, n in gate.comparison],
        "verdict": c.verdict,
        "verdict_sentence": verdict_text(c.verdict),
        "below_baseline_allowed": gate.below_baseline_allowed,
        "selection": c.selection,
        "active_learning": data.get("active_learning") or [],
        "code": code,
        "data": data,
        "params": c.lineage.get("params"),
        "seed": c.lineage.get("seed"),
        "packages": c.lineage.get("packages"),
        "lineage": c.lineage,
        "intended_use": INTENDED_USE[c.family],
        "known_limits": KNOWN_LIMITS[c.family],
        "plots": [p.name for p in c.plots],
        "released_by": lineage_mod.git_state(),
    }
    json_path = write_text_atomic(out / "model_card.json", json.dumps(card, indent=2, default=str) + "\n")

    rows = "\n".join(f"| {m} | {_num(p)} | {n:.4f} | {_interval(c.intervals.get(m))} |" for m, p, n in gate.comparison)
    plots = "\n".join(f"![{p.name}]({p.name})" for p in c.plots)
    md = f"""# {name} {version}

{c.family} model, released {card["released"]} ({gate.bump} release{f" after {previous}" if previous else ", the first"}).

## Headline metrics (test split)

| metric | {previous or "previous"} | {version} | 95% CI |
|---|---|---|---|
{rows}

## Against the baseline

{_baseline_md(c, gate)}

## How the model was chosen

{_selection_md(c.selection)}

## Active learning

{_active_learning_md(card["active_learning"])}

## Intended use

{INTENDED_USE[c.family]}

## Known limits

{KNOWN_LIMITS[c.family]}

## Lineage

- code commit: `{code.get("commit")}`{" (dirty tree)" if code.get("dirty") else ""}
- data: {lineage_mod.describe_data(data)}, dataset version `{data.get("dataset_version")}`
- seed: {c.lineage.get("seed")}
- labels ({len(c.labels)}): {", ".join(c.labels[:20])}{" …" if len(c.labels) > 20 else ""}
- archive: `{c.archive.name}`
- params and package versions: `model_card.json` (`params`, `packages`, `lineage`)

## Evaluation plots

{plots or "(none)"}
"""
    return [json_path, write_text_atomic(out / "model_card.md", md)]
