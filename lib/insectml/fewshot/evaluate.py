"""Evaluate an embedder on novel classes it never saw: nearest-prototype top-1/top-5,
5-way 1-shot and 5-shot episodes with 95 % intervals, the same scores for two baselines
(a colour histogram and the same network untrained) on the same episodes and a verdict
on whether the model beats the better one, open-set AUROC and the calibrated "unknown"
threshold (the histogram of known and unknown queries' scores with the threshold, the ROC
curve), the calibration of the probabilities (expected calibration error and a
reliability diagram of nearest-prototype classification with the model's temperature),
the cross-validation summary of a cross-validated model, the training curves (the model
folder's history.jsonl), clustering (NMI/ARI, cluster → suggested class table), a 2-D map,
Grad-CAM explanations (:mod:`insectml.fewshot.explain`), metrics.json and report.html
(verdict first). Writes the serving gallery too (with the model's temperature)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from insectml.data.manifest import read_json, read_manifest
from insectml.errors import ConfigError
from insectml.fewshot.data import ImageSet, normalisation
from insectml.fewshot.embed import ColourHistogram, embed, episode_scores, episode_summary, load_embedder
from insectml.fewshot.explain import explain_evaluation
from insectml.fewshot.gallery import Gallery, calibrate_threshold, probabilities, prototype_classification
from insectml.fewshot.model import embedder_from_config
from insectml.fileio import open_atomic, write_json_atomic
from insectml.report import Figure, Section, Table

CV_JSON = "cv.json"  # in a cross-validated refit's model folder ('insectml fewshot cv')


def open_set_scores(emb: np.ndarray, rows: list[dict], seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Enrol a seeded half of the classes from their support images; best similarity of
    every query to that gallery, for queries of enrolled (known) and other (unknown) classes."""
    classes = sorted({r["label"] for r in rows})
    rng = np.random.default_rng(seed)
    known = set(rng.choice(classes, max(1, len(classes) // 2), replace=False).tolist())
    support = [i for i, r in enumerate(rows) if r["subset"] == "support" and r["label"] in known]
    gallery = Gallery.from_embeddings(emb[support], [rows[i]["label"] for i in support])
    queries = [i for i, r in enumerate(rows) if r["subset"] == "query"]
    best = gallery.similarities(emb[queries]).max(1)
    is_known = np.asarray([rows[i]["label"] in known for i in queries])
    return best[is_known], best[~is_known], sorted(known)


def _clusters(emb: np.ndarray, labels: list[str], out_dir: Path) -> dict:
    from sklearn.cluster import HDBSCAN, AgglomerativeClustering
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from tqdm import tqdm

    n_classes = len(set(labels))
    methods = {
        "agglomerative": lambda: AgglomerativeClustering(n_clusters=n_classes, metric="cosine", linkage="average"),
        "hdbscan": lambda: HDBSCAN(min_cluster_size=2, metric="euclidean", copy=True),
    }
    result = {}
    for name, method in tqdm(methods.items(), desc="clustering", unit="method", leave=False, disable=None):
        assign = method().fit_predict(emb)
        result[name] = {
            "nmi": float(normalized_mutual_info_score(labels, assign)),
            "ari": float(adjusted_rand_score(labels, assign)),
            "clusters": int(len(set(assign) - {-1})),
            "noise": int((assign == -1).sum()),
        }
        with open_atomic(out_dir / f"clusters_{name}.csv") as fh:
            writer = csv.writer(fh)
            writer.writerow(["cluster", "size", "suggested_class", "purity", "members"])
            for c in sorted(set(assign)):
                idx = np.flatnonzero(assign == c)
                names, counts = np.unique(np.asarray(labels)[idx], return_counts=True)
                top = int(counts.argmax())
                writer.writerow(
                    [
                        "noise" if c == -1 else int(c),
                        len(idx),
                        names[top],
                        round(counts[top] / len(idx), 3),
                        ";".join(names),
                    ]
                )
    return result


def _auroc(known: np.ndarray, unknown: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(known) == 0 or len(unknown) == 0:
        return None
    return float(roc_auc_score(np.r_[np.ones(len(known)), np.zeros(len(unknown))], np.r_[known, unknown]))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with open_atomic(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=90)
    _pyplot().close(fig)
    return path


def _map_plot(emb: np.ndarray, labels: list[str], path: Path, seed: int, method: str) -> Path:
    plt = _pyplot()
    if method == "umap":
        import umap

        xy = umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit_transform(emb)
    else:
        from sklearn.manifold import TSNE

        xy = TSNE(
            2, metric="cosine", init="pca", perplexity=min(30, max(2, len(emb) // 4)), random_state=seed
        ).fit_transform(emb)
    classes = sorted(set(labels))
    colour = {c: i for i, c in enumerate(classes)}
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.scatter(xy[:, 0], xy[:, 1], c=[colour[c] for c in labels], cmap="tab20", s=14)
    ax.set_title(f"novel test classes ({len(classes)}), {method.upper()} of the embeddings, one colour per class")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, path)


def read_history(model_dir: Path) -> list[dict]:
    """The epochs of the model's ``history.jsonl`` (the shared training loop's), [] without one."""
    path = model_dir / "history.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _curves_plot(history: list[dict], path: Path) -> Path:
    """Training loss and, beside it, every validation metric, per epoch; the best epoch of
    the first validation metric (the one early stopping watched) marked."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    metrics = [k for k in history[0] if k.startswith("val_")]
    fig, axes = plt.subplots(1, 2 if metrics else 1, figsize=(9 if metrics else 5, 3.4), squeeze=False)
    loss = axes[0, 0]
    loss.plot(epochs, [row["train_loss"] for row in history], marker="o", ms=3, label="training loss")
    loss.set(xlabel="epoch", ylabel="loss", title="training loss")
    if metrics:
        ax = axes[0, 1]
        for key in metrics:
            ax.plot(epochs, [row.get(key) for row in history], marker="o", ms=3, label=key.removeprefix("val_"))
        values = [row.get(metrics[0]) for row in history]
        if any(v is not None for v in values):
            best = epochs[int(np.nanargmax([np.nan if v is None else v for v in values]))]
            for a in (loss, ax):
                a.axvline(best, color="grey", ls="--", lw=1)
            ax.set_title(f"validation (best epoch {best}, dashed)")
        ax.set(xlabel="epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _open_set_plots(known: np.ndarray, unknown: np.ndarray, threshold: float, auroc: float | None, out_dir: Path):
    """The histogram of the queries' best cosine, known vs unknown classes, with the
    threshold; and the ROC curve of telling them apart by it, the threshold's point marked."""
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    low, high = min(known.min(), unknown.min(), threshold), max(known.max(), unknown.max(), threshold)
    margin = max(high - low, 1e-3) * 0.03
    bins = np.linspace(low - margin, high + margin, 31)
    ax.hist(known, bins=bins, alpha=0.6, label=f"known classes ({len(known)} queries)", color="tab:blue")
    ax.hist(unknown, bins=bins, alpha=0.6, label=f"unknown classes ({len(unknown)} queries)", color="tab:red")
    ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="best cosine similarity to the enrolled prototypes", ylabel="queries", title="open set")
    ax.legend(fontsize=8)
    fig.tight_layout()
    histogram = _save(fig, out_dir / "open_set_scores.png")
    if auroc is None:
        return histogram, None
    fpr, tpr, _ = roc_curve(np.r_[np.ones(len(known)), np.zeros(len(unknown))], np.r_[known, unknown])
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot(fpr, tpr, label=f"AUROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.plot(
        [float((unknown >= threshold).mean())],
        [float((known >= threshold).mean())],
        "o",
        color="black",
        label="at the threshold",
    )
    ax.set(
        xlabel="unknown queries accepted (false positive rate)",
        ylabel="known queries accepted (true positive rate)",
        title="open set ROC",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return histogram, _save(fig, out_dir / "open_set_roc.png")


# shots of the 5-way episodes each embedding is scored on, by metric name; the verdict
# uses the last one the test classes allow
EPISODE_SHOTS = {"episodes_5way_1shot": 1, "episodes_5way_5shot": 5}
BASELINES = {"colour_histogram": "colour histogram", "random_init": "random init"}  # name → what the report says


def _score(emb: np.ndarray, rows: list[dict], episodes: int, seed: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Top-1/top-5 of the nearest prototype (from the support images) over every class of
    ``rows``, for their query images, and the 5-way episodes; with the per-episode
    accuracies, which pair up across embeddings of the same rows scored with the same seed."""
    labels = [r["label"] for r in rows]
    gallery, queries, truth = prototype_classification(emb, rows)
    top, _ = gallery.classify(queries, k=5)
    per_episode = {name: episode_scores(emb, labels, 5, shot, episodes, seed) for name, shot in EPISODE_SHOTS.items()}
    scores = {
        "top1": float((top[:, 0] == truth).mean()),
        "top5": float((top == truth[:, None]).any(1).mean()),
        **{name: episode_summary(per_episode[name], labels, EPISODE_SHOTS[name]) for name in EPISODE_SHOTS},
    }
    return scores, per_episode


def baseline_embeddings(config: dict, images: ImageSet, seed: int, device: torch.device) -> dict[str, np.ndarray]:
    """The test images embedded by each baseline: an RGB histogram, and the model's
    architecture with its random initialisation (seeded; the caller's torch RNG is kept)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        untrained = embedder_from_config(config)
    return {
        "colour_histogram": embed(ColourHistogram(**normalisation(config)), images, device),
        "random_init": embed(untrained, images, device),
    }


def paired_difference(model: np.ndarray, baseline: np.ndarray) -> dict:
    """Mean of the per-episode differences model − baseline (same episodes) with its 95 %
    interval (± 1.96 σ/√n): ``difference``, ``low``, ``high``."""
    diff = model - baseline
    half = float(1.96 * diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    mean = float(diff.mean())
    return {"difference": mean, "low": mean - half, "high": mean + half}


def _verdict(per_episode: dict[str, dict[str, np.ndarray]], scores: dict[str, dict]) -> dict | None:
    """Whether the model beats the better baseline on the most-shot episodes the test
    classes allow: the lower end of the paired difference's 95 % interval is above 0.
    None when too few test classes for any 5-way episode."""
    metric = next((m for m in reversed(EPISODE_SHOTS) if len(per_episode["model"][m])), None)
    if metric is None:
        return None
    best = max(BASELINES, key=lambda b: scores[b][metric]["mean"])
    diff = paired_difference(per_episode["model"][metric], per_episode[best][metric])
    return {
        "metric": metric,
        "baseline": best,
        **diff,
        "episodes": len(per_episode["model"][metric]),
        "beats_baseline": diff["low"] > 0,
    }


def verdict_sentence(verdict: dict | None) -> str:
    """The report's first line: does the model beat the better baseline, by how much."""
    if verdict is None:
        return "No verdict: fewer than 5 test classes have 2 or more images, so there are no 5-way episodes"
    shots = f"5-way {EPISODE_SHOTS[verdict['metric']]}-shot"
    span = f"{verdict['difference']:+.3f} [{verdict['low']:.3f}, {verdict['high']:.3f}]".replace("-", "−")
    name = BASELINES[verdict["baseline"]]
    if verdict["beats_baseline"]:
        return f"Beats the best baseline ({name}) on {shots} by {span}"
    return f"Does NOT beat the best baseline ({name}) on {shots}: {span}"


def _episode_cell(result: dict) -> str:
    return f"{result['mean']:.4f} ± {result['ci95']:.4f}" if result["mean"] is not None else "—"


def _baseline_table(model_name: str, scores: dict[str, dict]) -> Table:
    """The model and each baseline × top-1, top-5 and the 5-way episodes (the model's row highlighted)."""
    rows = [
        [name, scores[key]["top1"], scores[key]["top5"], *(_episode_cell(scores[key][m]) for m in EPISODE_SHOTS)]
        for key, name in {"model": model_name, **BASELINES}.items()
    ]
    return Table(
        ["embedding", "top-1", "top-5", *(f"5-way {k}-shot ± 95% CI" for k in EPISODE_SHOTS.values())],
        rows,
        highlight=0,
    )


def evaluate_fewshot(
    model_dir: Path,
    manifest: Path,
    dataset_json: Path,
    root: Path,
    out_dir: Path,
    episodes: int = 600,
    seed: int = 42,
    embedding_map: str = "tsne",
    sweep: Path | None = None,
) -> dict:
    """``sweep``: the sweep.json of the sweep this model won; its table goes into the report."""
    from insectml.report import write_report

    model, config = load_embedder(model_dir)
    dataset = read_json(dataset_json, "dataset description")
    rows = read_manifest(manifest)
    test = [r for r in rows if r["split"] == "test"]
    val = [r for r in rows if r["split"] == "val"]
    if not test or not val:
        raise ConfigError(f"{manifest}: needs novel classes in the val and test splits")
    device = torch.device("cpu")
    size = config["image_size"]
    test_images = ImageSet(test, root, [], size, False, **normalisation(config))
    emb_test = embed(model, test_images, device)
    labels = [r["label"] for r in test]
    out_dir.mkdir(parents=True, exist_ok=True)

    # the model and the baselines, scored by the same code on the same queries and episodes
    embeddings = {"model": emb_test, **baseline_embeddings(config, test_images, seed, device)}
    scored = {name: _score(emb, test, episodes, seed) for name, emb in embeddings.items()}
    scores = {name: s for name, (s, _) in scored.items()}
    verdict = _verdict({name: p for name, (_, p) in scored.items()}, scores)

    # open set: threshold calibrated on classes the model never trained on (the val classes,
    # or the held-out folds of cross-validation), AUROC and accuracy on test
    threshold, threshold_from = _threshold(model, config, val, root, seed)
    known, unknown, _ = open_set_scores(emb_test, test, seed)
    open_set = {
        "auroc": _auroc(known, unknown),
        "threshold": threshold,
        "threshold_fitted_on": threshold_from,
        "known_accepted": float((known >= threshold).mean()) if len(known) else None,
        "unknown_rejected": float((unknown < threshold).mean()) if len(unknown) else None,
    }
    calibration = _calibration(config, emb_test, test, out_dir / "reliability.png")
    cv = read_json(model_dir / CV_JSON, "cross-validation summary") if (model_dir / CV_JSON).is_file() else None
    explained = explain_evaluation(model, config, test, root, emb_test, out_dir)
    metrics = {
        "family": "fewshot",
        "backbone": config["backbone"],
        "loss": config["loss"],
        "split": "test",
        "dataset_version": dataset.get("version"),
        "novel_classes": len({r["label"] for r in test if r["subset"] == "support"}),
        "n_queries": sum(r["subset"] == "query" for r in test),
        **scores["model"],
        "baselines": {name: scores[name] for name in BASELINES},
        "verdict": verdict,
        "open_set": open_set,
        "calibration": calibration,
        "cv": cv,
        "clustering": _clusters(emb_test, labels, out_dir),
        "explanations": explained.summary,
    }
    write_json_atomic(out_dir / "metrics.json", metrics)
    plot = _map_plot(emb_test, labels, out_dir / "embedding_map.png", seed, embedding_map)
    lineage = json.loads((model_dir / "lineage.json").read_text()) if (model_dir / "lineage.json").is_file() else {}
    sections = [
        Section(
            "Baselines",
            text=[
                f"The same test images, nearest prototypes and episodes ({episodes} episodes each, seed {seed}) "
                "for an 8×8×8 RGB histogram (Hellinger) and for the model's network with random weights."
            ],
            tables=[_baseline_table(f"model ({config['backbone']}, {config['loss']} loss)", scores)],
        ),
        *([_cv_section(cv, model_dir)] if cv else []),
        _training_section(model_dir, out_dir),
        _open_set_section(known, unknown, open_set, out_dir),
        Section(
            "Calibration",
            text=[_calibration_sentence(calibration)],
            figures=[Figure(out_dir / "reliability.png", "reliability diagram, test queries")] if calibration else [],
        ),
        Section(
            "Embeddings and clusters",
            text=["Clusters of the test embeddings; clusters_*.csv name each cluster's most frequent class."],
            tables=[
                Table(
                    ["method", "NMI", "ARI", "clusters", "noise"],
                    [[k, v["nmi"], v["ari"], v["clusters"], v["noise"]] for k, v in metrics["clustering"].items()],
                )
            ],
            figures=[Figure(plot, f"{embedding_map.upper()} map of the test embeddings")],
        ),
        Section("Explanations", text=explained.text, figures=[Figure(p, c) for p, c in explained.figures]),
    ]
    if sweep:
        from insectml.sweep import section as sweep_section

        sections.append(sweep_section(sweep))
    write_report(
        out_dir / "report.html",
        title=f"Few-shot embedder ({config['backbone']}, {config['loss']} loss) — novel test classes",
        verdict=verdict_sentence(verdict),
        headline=_headline(metrics, cv, threshold_from),
        sections=sections,
        lineage=lineage,
    )
    return metrics


def _headline(metrics: dict, cv: dict | None, threshold_from: str) -> dict:
    one, five = metrics["episodes_5way_1shot"], metrics["episodes_5way_5shot"]
    return {
        **(_cv_headline(cv) if cv else {}),
        "novel test classes": metrics["novel_classes"],
        "top-1 (nearest prototype, all novel classes)": metrics["top1"],
        "top-5": metrics["top5"],
        "5-way 1-shot": f"{one['mean']:.4f} ± {one['ci95']:.4f} ({one['episodes']} episodes)"
        if one["mean"] is not None
        else "—",
        "5-way 5-shot": f"{five['mean']:.4f} ± {five['ci95']:.4f} ({five['episodes']} episodes, "
        f"{five['eligible_classes']} classes with ≥ 6 images)"
        if five["mean"] is not None
        else f"— (only {five['eligible_classes']} classes have ≥ 6 images)",
        "open-set AUROC": metrics["open_set"]["auroc"],
        f"unknown threshold (cosine, from the {threshold_from})": metrics["open_set"]["threshold"],
        "calibration (test, nearest prototype)": _calibration_sentence(metrics["calibration"]),
        **{
            f"{k} NMI / ARI": f"{v['nmi']:.3f} / {v['ari']:.3f} ({v['clusters']} clusters)"
            for k, v in metrics["clustering"].items()
        },
    }


def _training_section(model_dir: Path, out_dir: Path) -> Section:
    history = read_history(model_dir)
    if not history:
        return Section("Training", text=["The model folder has no history.jsonl: no training curves."])
    return Section(
        "Training",
        text=[f"{len(history)} epochs of the shared training loop (the model folder's history.jsonl)."],
        figures=[Figure(_curves_plot(history, out_dir / "training_curves.png"), "training curves")],
    )


def _open_set_section(known: np.ndarray, unknown: np.ndarray, open_set: dict, out_dir: Path) -> Section:
    text = [
        "A seeded half of the test classes is enrolled from its support images; every test query is scored by its "
        "best cosine to those prototypes, and a query below the threshold is answered 'unknown'."
    ]
    if not len(known) or not len(unknown):
        return Section("Open set", text=[*text, "Too few test classes for both known and unknown queries."])
    histogram, roc = _open_set_plots(known, unknown, open_set["threshold"], open_set["auroc"], out_dir)
    return Section(
        "Open set",
        text=text,
        tables=[
            Table(
                ["AUROC", "threshold", "fitted on", "known accepted", "unknown rejected"],
                [
                    [
                        open_set["auroc"],
                        open_set["threshold"],
                        open_set["threshold_fitted_on"],
                        open_set["known_accepted"],
                        open_set["unknown_rejected"],
                    ]
                ],
            )
        ],
        figures=[
            Figure(histogram, "best cosine of known and unknown queries, with the threshold"),
            *([Figure(roc, "telling known from unknown queries by their best cosine")] if roc else []),
        ],
    )


def _threshold(model: torch.nn.Module, config: dict, val: list[dict], root: Path, seed: int) -> tuple[float, str]:
    """The open-set threshold and what it was fitted on: the model's own (config.json, from
    the held-out folds of cross-validation: its refit trained on the val classes), else
    calibrated here on the val classes."""
    if config.get("threshold") is not None:
        return float(config["threshold"]), config.get("threshold_fitted_on") or "model config"
    emb_val = embed(
        model, ImageSet(val, root, [], config["image_size"], False, **normalisation(config)), torch.device("cpu")
    )
    val_known, val_unknown, _ = open_set_scores(emb_val, val, seed)
    return calibrate_threshold(val_known, val_unknown), "val classes"


def _calibration(config: dict, emb: np.ndarray, rows: list[dict], plot: Path) -> dict | None:
    """The calibration of the model's probabilities (``softmax(cosine / T)``, T from
    config.json) on the nearest-prototype classification of ``rows``' query images among
    all their classes: expected calibration error, the reliability diagram at ``plot``.
    None for a model without a temperature."""
    from insectml import stats

    temperature = config.get("temperature")
    if temperature is None:
        return None
    gallery, queries, truth = prototype_classification(emb, rows)
    probs = probabilities(gallery.similarities(queries), temperature)
    ece = stats.expected_calibration_error(probs, truth)
    stats.plot_reliability(
        {f"T = {temperature:.3f} (ECE {ece:.3f})": (probs, truth)},
        plot,
        f"nearest prototype among {len(gallery.classes)} novel test classes",
    )
    return {
        "temperature": temperature,
        "temperature_fitted_on": config.get("temperature_fitted_on"),
        "ece": round(ece, 6),
        "n_queries": len(truth),
        "n_classes": len(gallery.classes),
        "mean_confidence": round(float(probs.max(1).mean()), 6),
        "accuracy": round(float((probs.argmax(1) == truth).mean()), 6),
    }


def _calibration_sentence(calibration: dict | None) -> str:
    if calibration is None:
        return "— (the model has no temperature: no probabilities)"
    return (
        f"T = {calibration['temperature']:.4f} (fitted on {calibration['temperature_fitted_on']}); "
        f"ECE {calibration['ece']:.3f} over {calibration['n_queries']} queries among {calibration['n_classes']} "
        f"classes (mean confidence {calibration['mean_confidence']:.3f}, accuracy {calibration['accuracy']:.3f})"
    )


def _cv_headline(cv: dict) -> dict:
    """The report's cross-validation lines: the model's and the baselines' CV means with
    their t-intervals over folds, and the paired difference to the better baseline."""
    from insectml.stats import format_ci

    lines = {}
    for metric, shots in EPISODE_SHOTS.items():
        result = cv[metric]
        if result is None:
            continue
        lines[f"CV 5-way {shots}-shot ({cv['k']} folds of held-out classes, mean ± 95% t-interval)"] = (
            format_ci(result["model"])
            + "; baselines: "
            + ", ".join(f"{BASELINES[b]} {format_ci(result[b])}" for b in BASELINES)
        )
    verdict = cv.get("verdict")
    if verdict:
        shots = EPISODE_SHOTS[verdict["metric"]]
        said = " (beats it)" if verdict["beats_baseline"] else " (does not beat it)"
        lines[f"CV model − {BASELINES[verdict['baseline']]} (5-way {shots}-shot, paired by fold)"] = (
            format_ci(verdict["difference"]) + said
        )
    return lines


def _cv_section(cv: dict, model_dir: Path) -> Section:
    """Per fold, its classes and the 5-way accuracies of the model and the baselines; the
    reliability diagram of the held-out folds when the model folder has it."""
    names = {"model": "model", **BASELINES}
    rows = []
    for fold in cv["folds"]:
        rows.append([fold["fold"], fold["classes"], *(fold[metric][n] for metric in EPISODE_SHOTS for n in names)])
    plot = model_dir / "reliability_cv.png"
    return Section(
        "Cross-validation",
        text=[f"{cv['reason']}: {cv['rule']}."],
        tables=[
            Table(
                ["fold", "classes", *(f"{n}, 5-way {k}-shot" for k in EPISODE_SHOTS.values() for n in names.values())],
                rows,
            )
        ],
        figures=[Figure(plot, "temperature fitted on the held-out folds (in-sample)")] if plot.is_file() else [],
    )


def build_gallery(model_dir: Path, manifest: Path, root: Path, out_dir: Path, threshold: float | None) -> Gallery:
    """The serving gallery: every class of the manifest, from its base images or its novel
    support images (test queries stay out, so they can test the server)."""
    model, config = load_embedder(model_dir)
    rows = [r for r in read_manifest(manifest) if r.get("subset") in ("train", "support")]
    if not rows:
        raise ConfigError(f"{manifest}: no images to build a gallery from")
    emb = embed(
        model, ImageSet(rows, root, [], config["image_size"], False, **normalisation(config)), torch.device("cpu")
    )
    gallery = Gallery.from_embeddings(emb, [r["label"] for r in rows])
    gallery.threshold = threshold
    gallery.temperature = config.get("temperature")
    gallery.save(out_dir)
    return gallery
