"""Active learning: pick the unlabelled samples most worth labelling, send them to
Supervisely with the model's answers as pre-annotations, and read the labelled export back.

- :mod:`.strategies`: uncertainty, diversity (k-center), novelty, hybrid, on arrays.
- :mod:`.pool`: the pool's files and what the model says about each (the served code path).
- :mod:`.supervisely`: the labelling project folder and its ``selection.json``.
- :mod:`.merge`: the labelled export → manifest-ready rows with provenance.
- :mod:`.cli`: ``insectml select``.

This module imports nothing heavy: the CLI's ``--help`` stays quick.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelectConfig:
    pool: Path
    model: Path
    budget: int
    strategy: str
    out: Path
    gallery: Path | None = None
    round: int = 1
    seed: int = 0
    force: bool = False


def run_selection(cfg: SelectConfig) -> Path:
    """Score the pool with the model, pick ``budget`` samples by ``strategy``, write the
    labelling project ``out``; returns ``out``. Every argument is checked before the pool
    is scored."""
    from insectml.active import pool as pool_mod
    from insectml.active.strategies import STRATEGIES, prepare_embeddings, select
    from insectml.active.supervisely import check_out, write_project
    from insectml.errors import ConfigError, InputFileError

    if cfg.strategy not in STRATEGIES:
        raise ConfigError(f"--strategy {cfg.strategy}: expected one of {', '.join(STRATEGIES)}")
    if cfg.budget < 1:
        raise ConfigError(f"--budget {cfg.budget}: expected at least 1 sample")
    if cfg.round < 1:
        raise ConfigError(f"--round {cfg.round}: expected 1 or more")
    if cfg.gallery is not None and not Path(cfg.gallery).is_dir():
        raise InputFileError(cfg.gallery, "gallery folder not found")
    family = pool_mod.model_family(cfg.model)
    if cfg.strategy == "novelty" and family != "fewshot":
        raise ConfigError(
            "--strategy novelty scores distance to the few-shot gallery; a "
            f"{family} model has none: use uncertainty, diversity or hybrid"
        )
    out, pool_dir = Path(cfg.out).resolve(), Path(cfg.pool).resolve()
    if out == pool_dir or pool_dir in out.parents:
        raise ConfigError(f"--out {cfg.out} lies inside the pool {cfg.pool}: the next round would select from it")
    check_out(Path(cfg.out), cfg.force)

    items = pool_mod.list_pool(cfg.pool, family)
    scored = pool_mod.score_pool(items, cfg.model, family, cfg.gallery)
    needs_embeddings = cfg.strategy in ("diversity", "hybrid")
    if needs_embeddings and scored.embeddings is None:
        raise ConfigError(
            f"--strategy {cfg.strategy} needs the model's embeddings, which a TorchScript detector does not "
            "expose: give the model folder with weights.pt, or use --strategy uncertainty"
        )
    embeddings = labelled = None
    if needs_embeddings:
        embeddings, labelled = prepare_embeddings(scored.embeddings, scored.labelled, scored.embedding_kind)
    n = len(scored.items)
    if cfg.budget > n:
        log.warning("--budget %d is more than the %d readable files of the pool: all are selected", cfg.budget, n)
    selection = select(
        cfg.budget,
        cfg.strategy,
        uncertainty=scored.uncertainty,
        tiebreak=scored.tiebreak,
        novelty_scores=scored.novelty,
        embeddings=embeddings,
        labelled=labelled,
        seed=cfg.seed,
        tiebreak_name=scored.tiebreak_name,
    )
    pool_info = {
        "path": str(pool_dir),
        "kind": "prediction log" if pool_mod.is_log_folder(cfg.pool) else "folder",
        "files": len(items),
    }
    return write_project(
        cfg.out,
        scored,
        selection,
        round_=cfg.round,
        budget=cfg.budget,
        seed=cfg.seed,
        model=model_info(cfg.model, family),
        pool=pool_info,
        force=cfg.force,
    )


def model_info(model_dir: Path, family: str) -> dict:
    """What selection.json records of the model: its folder, family, name and version (as
    the server's prediction log names them), and the sha256 of its weights and the code
    commit its lineage.json records (when it has one)."""
    import json

    from insectml.serving.predlog import identity

    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    name, version = identity(model_dir)  # as the server's prediction log names it
    info = {"dir": str(model_dir.resolve()), "family": family, "name": name, "version": version}
    try:
        lineage = json.loads((model_dir / "lineage.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        lineage = {}
    if isinstance(lineage, dict):
        if isinstance(lineage.get("sha256"), dict) and lineage["sha256"]:
            info["sha256"] = lineage["sha256"]
        if isinstance(lineage.get("code"), dict) and lineage["code"].get("commit"):
            info["code_commit"] = lineage["code"]["commit"]
    if family == "wingbeat":
        info["frontend"] = config["frontend"]
    return info
