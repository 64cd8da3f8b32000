"""Model cards: what a released model is, how good, from what, and for what not."""

from __future__ import annotations

import json
from pathlib import Path

from insectml import lineage as lineage_mod
from insectml.release.candidate import Candidate
from insectml.release.gate import GateResult

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
        "comparison": [{"metric": m, "previous": p, "new": n} for m, p, n in gate.comparison],
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
    json_path = out / "model_card.json"
    json_path.write_text(json.dumps(card, indent=2, default=str) + "\n")

    rows = "\n".join(f"| {m} | {'—' if p is None else f'{p:.4f}'} | {n:.4f} |" for m, p, n in gate.comparison)
    plots = "\n".join(f"![{p.name}]({p.name})" for p in c.plots)
    md = f"""# {name} {version}

{c.family} model, released {card["released"]} ({gate.bump} release{f" after {previous}" if previous else ", the first"}).

## Headline metrics (test split)

| metric | {previous or "previous"} | {version} |
|---|---|---|
{rows}

## Intended use

{INTENDED_USE[c.family]}

## Known limits

{KNOWN_LIMITS[c.family]}

## Lineage

- code commit: `{code.get("commit")}`{" (dirty tree)" if code.get("dirty") else ""}
- data: `data.dvc` md5 `{data.get("dvc_md5")}`, dataset version `{data.get("dataset_version")}`
- seed: {c.lineage.get("seed")}
- labels ({len(c.labels)}): {", ".join(c.labels[:20])}{" …" if len(c.labels) > 20 else ""}
- archive: `{c.archive.name}`
- params and package versions: `model_card.json` (`params`, `packages`, `lineage`)

## Evaluation plots

{plots or "(none)"}
"""
    md_path = out / "model_card.md"
    md_path.write_text(md)
    return [json_path, md_path]
