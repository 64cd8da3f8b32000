#!/usr/bin/env python3
"""Active learning on the demo data: how many labels active selection needs, next to random picks.

Simulated labelling (the oracle is the held-back truth), measured side by side in one run,
``--seeds`` seeds per family; every strategy of a seed starts from the same seed set and
scores on the same fixed test set:

- wingbeat (data/wingbeat): the library's validate and features (by the CLI; grouped split
  by recording event, so no event is on both sides): the pool is the train + val split,
  the test set the test split. The model is the pipeline's features model (``create_classical``
  of the default ``wingbeat_feature_model``: scaler + random forest on the engineered
  features), its ``predict_proba`` uncalibrated (the pipeline fits a temperature on a
  validation split the simulation does not have); the score is test macro-F1.
- few-shot (data/fewshot): ``insectml fewshot validate`` splits the classes (``--fewshot-novel``
  of them held out as novel test classes); the embedder is the library's few-shot training
  (``train_fewshot``, its defaults, ``--fewshot-epochs`` epochs) on the base classes only
  (``--fewshot-embedder histogram``: the colour-histogram baseline, no learning). On the
  novel classes one group (image, or near-duplicates merged) per class is the test set,
  the rest the pool; the classifier is the nearest prototype of the labelled images'
  embeddings (``Gallery.from_embeddings``), the score test top-1.

Each run starts from ``--seed-per-class`` labelled per class (drawn per seed), then labels
``--round`` more per round, by each strategy of :mod:`insectml.active.strategies` (wingbeat:
uncertainty, hybrid; few-shot: uncertainty, novelty, hybrid, with the margin taken on
``softmax(cosine / T)`` at the embedder's fitted temperature) and by random picks, until the
pool is used up; the last point is the full-data score. Printed: the learning curves (mean
over seeds with the min–max), and per strategy the labels used (seed set included) when
the mean curve first reaches 95 % of the full-data score (mean over seeds), and from which
it stays at or above it (the test sets are small: a curve can touch the line early and fall
back); their ratio to random's (target ≤ 0.7) with the per-seed ratios and a 95 % bootstrap
interval over seeds. The curves are drawn to ``--out``/active_learning.png.

The demo's features, split and trained embedder are cached under ``--cache`` (default
``$INSECTML_CACHE/benchmarks``), keyed by the data's files, the settings and the source of
the library's packages that compute them; ``--no-cache`` works in a temporary folder.

    python benchmarks/active_learning.py [--quick] [--seeds 3] [--out benchmarks/out] [--families wingbeat,fewshot]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

FAMILIES = ("wingbeat", "fewshot")
STRATEGIES = {
    "wingbeat": ("random", "uncertainty", "hybrid"),
    "fewshot": ("random", "uncertainty", "novelty", "hybrid"),
}
REACH = 0.95  # of the full-data score
TARGET = 0.7  # labels active / labels random
BOOTSTRAP = 2000
log = logging.getLogger("active_learning")


@dataclass(frozen=True)
class Task:
    """One family's simulation: the pool (features or embeddings, true class) and the fixed test set."""

    family: str
    metric: str
    classes: list[str]
    pool_x: np.ndarray
    pool_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    round_size: int
    seed_per_class: int
    learner: Callable  # (task, labelled, unlabelled, seed, need_pool) -> (score, selection inputs | None)
    about: str


# -- data -----------------------------------------------------------------------------------------


def source_key(*parts: object, files: list[Path] = (), code: tuple[str, ...] = ()) -> str:
    """A short hash of ``parts``, of the listed files' names, sizes and times, and of the
    source of the library's ``code`` packages (what computes the cached files)."""
    h = hashlib.sha256(repr(parts).encode())
    for path in sorted(files):
        st = path.stat()
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    for package in code:
        for path in sorted((ROOT / "lib" / "insectml" / package).rglob("*.py")):
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def cached(folder: Path, build: Callable[[Path], None]) -> Path:
    """``folder``, built by ``build(stage)`` into a staged folder renamed to it when missing."""
    from insectml.fileio import staged_folder

    if not (folder / ".complete").is_file():
        with staged_folder(folder) as stage:
            build(stage)
            (stage / ".complete").touch()
    return folder


def wingbeat_task(cache: Path, args: argparse.Namespace) -> Task:
    from insectml.active.strategies import entropy, margin_uncertainty, prepare_embeddings
    from insectml.wingbeat.family import PARAMS
    from insectml.wingbeat.features import load_features
    from insectml.wingbeat.models import create_classical
    from sklearn.metrics import f1_score

    data = ROOT / "data" / "wingbeat"
    files = [data / "labels.csv", *(data / "recordings").rglob("*.wav")]

    def build(stage: Path) -> None:
        cli = [sys.executable, str(ROOT / "bin" / "insectml"), "wingbeat"]
        for step in (
            ["validate", "--labels", data / "labels.csv", "--seed", args.seed, "--out", stage],
            ["features", "--manifest", stage / "manifest.jsonl", "--dataset", stage / "dataset.json",
             "--data", data, "--out", stage / "features.npz"],
        ):  # fmt: skip
            subprocess.run([*cli, *map(str, step)], check=True, stdout=subprocess.DEVNULL)

    log.info("wingbeat: validate and features of %s (reused when cached under %s)", data, cache)
    folder = cached(
        cache / f"wingbeat-{source_key('wingbeat', args.seed, files=files, code=('wingbeat', 'data'))}", build
    )
    feats = load_features(folder / "features.npz")
    classes = sorted(set(feats["labels"].tolist()))
    y = np.asarray([classes.index(label) for label in feats["labels"]])
    test = feats["split"] == "test"
    groups = feats["groups"]
    assert not set(groups[test]) & set(groups[~test]), "a recording event on both sides of the split"
    model_name = PARAMS.default("wingbeat_feature_model")
    n_classes = len(classes)

    def learner(task: Task, labelled: np.ndarray, unlabelled: np.ndarray, seed: int, need_pool: bool):
        model = create_classical(model_name, seed, {}, threads=args.threads)
        rows = np.sort(labelled)  # the forest's bootstrap depends on row order: one labelled set, one model
        model.fit(task.pool_x[rows], task.pool_y[rows])
        pred = model.predict(task.test_x)
        score = f1_score(task.test_y, pred, average="macro", labels=np.arange(n_classes), zero_division=0)
        if not need_pool:
            return score, None
        probs = model.predict_proba(task.pool_x[unlabelled])
        emb, ref = prepare_embeddings(task.pool_x[unlabelled], task.pool_x[labelled], "standardise")
        return score, {
            "uncertainty": margin_uncertainty(probs),
            "tiebreak": entropy(probs),
            "embeddings": emb,
            "labelled": ref,
        }

    n_groups = len(set(groups[test]))
    return Task(
        "wingbeat",
        "macro-F1",
        classes,
        feats["engineered"][~test].astype(np.float64),
        y[~test],
        feats["engineered"][test].astype(np.float64),
        y[test],
        args.wingbeat_round,
        args.seed_per_class,
        learner,
        f"{data.relative_to(ROOT)}: {model_name} (the pipeline's features model, uncalibrated) on "
        f"{feats['engineered'].shape[1]} engineered features; pool {(~test).sum()} recordings (train + val), "
        f"test {test.sum()} ({n_groups} recording events, none in the pool); {n_classes} classes",
    )


def fewshot_task(cache: Path, args: argparse.Namespace) -> Task:
    import torch
    from insectml.active.strategies import entropy, margin_uncertainty, prepare_embeddings
    from insectml.data.manifest import read_manifest
    from insectml.fewshot.data import ImageSet, normalisation
    from insectml.fewshot.embed import ColourHistogram, embed, load_embedder
    from insectml.fewshot.family import PARAMS as FEWSHOT
    from insectml.fewshot.gallery import Gallery, probabilities
    from insectml.fewshot.train import FewshotTrainConfig, train_fewshot
    from insectml.fewshot.validate import FewshotValidateConfig, validate_fewshot
    from insectml.training.loop import declared_loop

    data = ROOT / "data" / "fewshot"
    files = [data / "classes.csv", *(data / "images").rglob("*.png")]
    key = source_key("fewshot", args.seed, args.fewshot_novel, files=files, code=("fewshot", "training", "data"))

    def split(stage: Path) -> None:
        validate_fewshot(
            FewshotValidateConfig(
                root=data, out_dir=stage, images=data / "images", seed=args.seed, test_fraction=args.fewshot_novel
            )
        )

    # the near-duplicate warnings are the demo's own (hue variants of one drawing)
    logging.getLogger("insectml.fewshot.validate").setLevel(logging.ERROR)
    split_dir = cached(cache / f"fewshot-{key}" / "split", split)
    manifest, dataset = split_dir / "manifest.jsonl", split_dir / "dataset.json"
    novel = [r for r in read_manifest(manifest) if r["split"] == "test"]
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")

    if args.fewshot_embedder == "histogram":
        size = FEWSHOT.default("fewshot_image_size")
        emb = embed(ColourHistogram(), ImageSet(novel, data, [], size, False), cpu)
        temperature, about = None, "the colour-histogram embedding (no learning; margin on the cosines)"
    else:
        epochs = args.fewshot_epochs

        def train(stage: Path) -> None:
            log.info("few-shot: training the embedder on the base classes, %d epochs, kept under %s", epochs, cache)
            loop = replace(declared_loop(FEWSHOT), epochs=epochs, seed=args.seed, threads=args.threads, device="cpu")
            train_fewshot(FewshotTrainConfig(manifest=manifest, dataset=dataset, root=data, out_dir=stage, loop=loop))

        model_dir = cached(cache / f"fewshot-{key}" / f"embedder-{epochs}ep", train)
        model, config = load_embedder(model_dir)
        emb = embed(model, ImageSet(novel, data, [], config["image_size"], False, **normalisation(config)), cpu)
        temperature = config.get("temperature")
        n_base = len({r["label"] for r in read_manifest(manifest) if r["split"] == "train"})
        about = (
            f"the library's few-shot embedder ({config['backbone']}, {config['loss']} loss, {epochs} epochs on the "
            f"{n_base} base classes only; margin on softmax(cosine / {temperature:g}))"
        )
    emb = emb.astype(np.float64)

    # one group per novel class is the test set (fixed across seeds), the rest the pool
    labels = np.asarray([r["label"] for r in novel])
    groups = np.asarray([r["group"] for r in novel])
    rng = np.random.default_rng(args.seed)
    test_groups = set()
    for c in sorted(set(labels.tolist())):
        own = sorted(set(groups[labels == c].tolist()))
        if len(own) > 1:
            test_groups.add(own[rng.integers(len(own))])
    test = np.isin(groups, sorted(test_groups))
    # a class with no pool image left (its groups all tested) cannot be labelled: drop it
    keep_classes = set(labels[~test].tolist())
    keep = np.isin(labels, sorted(keep_classes))
    test &= keep
    pool = keep & ~test
    assert not set(groups[test]) & set(groups[pool]), "a group on both sides of the split"
    classes = sorted(keep_classes)
    y = np.asarray([classes.index(label) if label in keep_classes else -1 for label in labels])

    def learner(task: Task, labelled: np.ndarray, unlabelled: np.ndarray, seed: int, need_pool: bool):
        gallery = Gallery.from_embeddings(task.pool_x[labelled], task.pool_y[labelled].tolist())
        order = np.asarray(gallery.classes)
        score = float((order[gallery.similarities(task.test_x).argmax(1)] == task.test_y).mean())
        if not need_pool:
            return score, None
        sims = gallery.similarities(task.pool_x[unlabelled])
        probs = probabilities(sims, temperature) if temperature else None
        emb_pool, ref = prepare_embeddings(task.pool_x[unlabelled], task.pool_x[labelled], "l2")
        return score, {
            "uncertainty": margin_uncertainty(probs if probs is not None else sims),
            "tiebreak": entropy(probs) if probs is not None else None,
            "novelty_scores": 1.0 - sims.max(axis=1),
            "embeddings": emb_pool,
            "labelled": ref,
        }

    return Task(
        "fewshot",
        "top-1",
        classes,
        emb[pool],
        y[pool],
        emb[test],
        y[test],
        args.fewshot_round,
        args.seed_per_class,
        learner,
        f"{data.relative_to(ROOT)}: nearest prototype on {about}; {len(classes)} novel classes, "
        f"pool {pool.sum()} images, test {test.sum()} (one group per class, none in the pool)",
    )


# -- simulation -------------------------------------------------------------------------------------


def seed_set(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` pool indices of every class (all of a smaller class), drawn by ``rng``."""
    picks = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


def simulate(task: Task, strategy: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Label counts and test scores, round by round from the seed set until the pool is used up."""
    from insectml.active.strategies import select

    n = len(task.pool_y)
    labelled = seed_set(task.pool_y, task.seed_per_class, np.random.default_rng([seed, 0]))
    picker = np.random.default_rng([seed, 1])
    counts, scores = [], []
    for round_ in range(n + 1):
        unlabelled = np.setdiff1d(np.arange(n), labelled)
        need_pool = strategy != "random" and len(unlabelled) > 0
        score, scored = task.learner(task, labelled, unlabelled, seed, need_pool)
        counts.append(len(labelled))
        scores.append(score)
        if len(unlabelled) == 0:
            break
        k = min(task.round_size, len(unlabelled))
        if strategy == "random":
            picked = picker.choice(unlabelled, k, replace=False)
        else:
            picked = unlabelled[select(k, strategy, seed=seed * 1000 + round_, **scored).indices]
        labelled = np.concatenate([labelled, picked])
    return np.asarray(counts), np.asarray(scores)


RULES = ("first reaches", "stays at or above")


def labels_to(counts: np.ndarray, scores: np.ndarray, target: float, rule: str) -> int | None:
    """The label count at which the curve first reaches ``target`` (``first reaches``), or from
    which it stays at or above it to the end (``stays at or above``); None if it never does."""
    ok = scores >= target - 1e-12
    if rule == RULES[0]:
        hit = np.flatnonzero(ok)
        return int(counts[hit[0]]) if len(hit) else None
    start = np.flatnonzero(~ok)[-1] + 1 if (~ok).any() else 0
    return int(counts[start]) if start < len(counts) else None


def ratio(a: int | None, b: int | None) -> float:
    return float("nan") if a is None or b is None else a / b


def summarise(counts: np.ndarray, scores: dict, target: float, rule: str, n_seeds: int) -> dict:
    """Per strategy, by ``rule``: labels to ``target`` on the mean curve and per seed, their ratio
    to random's (per seed: to random's of the same seed and seed set), and the 95 % interval
    of the ratio over :data:`BOOTSTRAP` resamples of the seeds (resamples where a mean curve
    never gets there are counted, not used)."""
    boot = np.random.default_rng(0).integers(n_seeds, size=(BOOTSTRAP, n_seeds))
    random_mean = labels_to(counts, scores["random"].mean(0), target, rule)
    random_seed = [labels_to(counts, scores["random"][i], target, rule) for i in range(n_seeds)]
    random_boot = [labels_to(counts, scores["random"][b].mean(0), target, rule) for b in boot]
    out = {}
    for s, curves in scores.items():
        mean = labels_to(counts, curves.mean(0), target, rule)
        per_seed = [labels_to(counts, curves[i], target, rule) for i in range(n_seeds)]
        resampled = np.asarray(
            [
                ratio(labels_to(counts, curves[b].mean(0), target, rule), r)
                for b, r in zip(boot, random_boot, strict=True)
            ]
        )
        ok = resampled[np.isfinite(resampled)]
        out[s] = {
            "labels": mean,
            "per_seed": per_seed,
            "ratio": ratio(mean, random_mean),
            "per_seed_ratio": [ratio(a, b) for a, b in zip(per_seed, random_seed, strict=True)],
            "boot": (float(np.percentile(ok, 2.5)), float(np.percentile(ok, 97.5))) if len(ok) else None,
            "boot_undefined": int(len(resampled) - len(ok)),
        }
    return out


def run_family(task: Task, seeds: list[int]) -> dict:
    """Every strategy's curve per seed, the full-data score and the labels-to-target summaries."""
    from tqdm import tqdm

    curves = {}
    jobs = [(s, seed) for s in STRATEGIES[task.family] for seed in seeds]
    for strategy, seed in tqdm(jobs, desc=task.family, unit="run", disable=None):
        curves[(strategy, seed)] = simulate(task, strategy, seed)
    counts = curves[jobs[0]][0]
    for c, _ in curves.values():
        assert np.array_equal(c, counts), "the strategies' label counts differ"
    scores = {s: np.stack([curves[(s, seed)][1] for seed in seeds]) for s in STRATEGIES[task.family]}
    full = scores["random"][:, -1]  # every pool sample labelled: the full-data score of each seed
    target = REACH * float(full.mean())
    summary = {rule: summarise(counts, scores, target, rule, len(seeds)) for rule in RULES}
    return {"counts": counts, "scores": scores, "full": full, "target": target, "summary": summary}


# -- output -----------------------------------------------------------------------------------------


def print_table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def _labels(n: int | None) -> str:
    return "never" if n is None else str(n)


def _ratio(r: dict) -> str:
    value = "—" if np.isnan(r["ratio"]) else f"{r['ratio']:.2f}"
    boot = "—" if r["boot"] is None else f"[{r['boot'][0]:.2f}, {r['boot'][1]:.2f}]"
    if r["boot_undefined"]:
        boot += f" ({r['boot_undefined']}/{BOOTSTRAP} resamples never get there)"
    return f"{value} {boot}"


def report(task: Task, result: dict, seeds: list[int]) -> None:
    """Print one family's curves and labels-to-target tables."""
    strategies = STRATEGIES[task.family]
    counts, scores, full = result["counts"], result["scores"], result["full"]
    print(f"\n## {task.family}\n\n{task.about}.")
    print(
        f"Seed set {task.seed_per_class} per class ({counts[0]} labels), rounds of {task.round_size}, "
        f"seeds {', '.join(map(str, seeds))}. Full-data {task.metric} {full.mean():.3f} "
        f"(per seed {', '.join(f'{v:.3f}' for v in full)}); {REACH:.0%} of it: {result['target']:.3f}.\n"
    )
    print(f"test {task.metric}, mean over seeds [min, max]:\n")
    rows = []
    for i, n in enumerate(counts):
        cells = [
            f"{scores[s][:, i].mean():.3f} [{scores[s][:, i].min():.3f}, {scores[s][:, i].max():.3f}]"
            for s in strategies
        ]
        rows.append([str(n), *cells])
    print_table(["labels", *strategies], rows)
    for rule in RULES:
        print(f"\nlabels used (seed set included) when the curve {rule} {result['target']:.3f}:\n")
        rows = []
        for s in strategies:
            r = result["summary"][rule][s]
            per_seed = ", ".join(map(_labels, r["per_seed"]))
            if s == "random":
                rows.append([s, _labels(r["labels"]), per_seed, "1", ""])
                continue
            per_seed_ratio = ", ".join("—" if np.isnan(v) else f"{v:.2f}" for v in r["per_seed_ratio"])
            rows.append([s, _labels(r["labels"]), per_seed, _ratio(r), per_seed_ratio])
        print_table(["strategy", "mean curve", "per seed", "active / random [bootstrap 95%]", "per seed"], rows)


def verdict(tasks: list[Task], results: dict) -> None:
    """Every active strategy's ratio under both rules, against the target."""
    print(f"\n## active / random labels to {REACH:.0%} of the full-data score (target ≤ {TARGET})\n")
    rows = []
    for task in tasks:
        summary = results[task.family]["summary"]
        for s in STRATEGIES[task.family][1:]:
            cells = [_ratio(summary[rule][s]) for rule in RULES]
            ratios = [summary[rule][s]["ratio"] for rule in RULES]
            met = all(r <= TARGET for r in ratios)  # NaN compares False
            highs = [summary[rule][s]["boot"] for rule in RULES]
            sure = all(h is not None and h[1] < 1 for h in highs)
            note = ("met" if met else "not met") + ("" if sure else "; a bootstrap interval reaches 1 or more")
            rows.append([task.family, s, *cells, note])
    print_table(["family", "strategy", *(f"{rule} [95%]" for rule in RULES), "target"], rows)


def plot(tasks: list[Task], results: dict, path: Path) -> Path:
    from insectml.caches import default_caches

    default_caches()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from insectml.fileio import open_atomic

    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        result = results[task.family]
        counts = result["counts"]
        for s in STRATEGIES[task.family]:
            y = result["scores"][s]
            line = ax.plot(counts, y.mean(0), label=s, lw=1.8, ls="--" if s == "random" else "-")[0]
            ax.fill_between(counts, y.min(0), y.max(0), color=line.get_color(), alpha=0.15, lw=0)
            hit = result["summary"][RULES[0]][s]["labels"]
            if hit is not None:
                ax.axvline(hit, color=line.get_color(), lw=0.8, ls=":")
        ax.axhline(result["target"], color="grey", lw=0.8, ls="--")
        ax.text(counts[-1], result["target"], f"{REACH:.0%} of full data ", ha="right", va="bottom", fontsize=8)
        ax.set_xlabel("labels used")
        ax.set_ylabel(f"test {task.metric}")
        ax.set_title(f"{task.family}: mean of {len(result['full'])} seeds, band min–max", fontsize=10)
        ax.text(0.01, 0.99, f"dotted: first reaches {REACH:.0%} of full data", transform=ax.transAxes,
                ha="left", va="top", fontsize=8)  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    with open_atomic(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per strategy (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="of the split and the embedder; runs use seed, seed+1, …")
    parser.add_argument("--seed-per-class", type=int, default=1, help="labelled per class at the start (default: 1)")
    parser.add_argument("--wingbeat-round", type=int, default=20, help="labels per wingbeat round (default: 20)")
    parser.add_argument("--fewshot-round", type=int, default=10, help="labels per few-shot round (default: 10)")
    parser.add_argument("--fewshot-embedder", choices=("trained", "histogram"), default="trained")
    parser.add_argument("--fewshot-epochs", type=int, default=4, help="of the trained embedder (default: 4)")
    parser.add_argument("--fewshot-novel", type=float, default=0.4, help="share of classes held out as novel (0.4)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    parser.add_argument("--quick", action="store_true", help="rounds twice as large, a 2-epoch embedder")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out", help="where the PNG goes")
    cache_root = Path(os.environ.get("INSECTML_CACHE", Path.home() / ".cache" / "insectml")) / "benchmarks"
    parser.add_argument("--cache", type=Path, default=cache_root, help="features, split, embedder (%(default)s)")
    parser.add_argument("--no-cache", action="store_true", help="work in a temporary folder instead")
    args = parser.parse_args()
    families = args.families.split(",")
    if unknown := set(families) - set(FAMILIES):
        parser.error(f"--families: unknown {', '.join(sorted(unknown))} (choose from {', '.join(FAMILIES)})")
    if args.quick:
        args.wingbeat_round *= 2
        args.fewshot_round *= 2
        args.fewshot_epochs = min(args.fewshot_epochs, 2)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("insectml").setLevel(logging.WARNING)

    tic = time.perf_counter()
    seeds = [args.seed + i for i in range(args.seeds)]
    with tempfile.TemporaryDirectory(prefix="active-bench-") as tmp:
        cache = Path(tmp) if args.no_cache else args.cache / "active_learning"
        build = {"wingbeat": wingbeat_task, "fewshot": fewshot_task}
        tasks = [build[f](cache, args) for f in families]
    prepared = time.perf_counter() - tic
    results = {t.family: run_family(t, seeds) for t in tasks}
    for t in tasks:
        report(t, results[t.family], seeds)
    verdict(tasks, results)
    png = plot(tasks, results, args.out / "active_learning.png")
    print(f"\ncurves: {png}\nwall time {time.perf_counter() - tic:.0f} s (data and embedder {prepared:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
