"""The pool: unlabelled files, and what the model says about each of them.

A pool is a folder of files (wingbeat: ``.wav``; detector and few-shot: ``.jpg``,
``.jpeg``, ``.png``; found at any depth, hidden files and folders skipped), or a
prediction-log folder written by a server started with ``--log-inputs`` (its
``predictions.jsonl*`` lines name the stored bodies in ``inputs/``; see
:mod:`insectml.serving.predlog`). Files with the same content count once (by sha256).

Scoring runs the family's served code path (the predictors of ``insectml.<family>.predict``,
decoded as the MMS handlers decode a body) and keeps, per file:

- wingbeat: the calibrated class probabilities; the engineered features as embedding
  (standardised for k-center), as the server logs them.
- few-shot: the cosine similarities to the gallery's prototypes, the probabilities
  ``softmax(cosine / T)`` with the model's temperature (without one, the margin is taken
  on the cosines), the open-set answer ("unknown" below the gallery's threshold),
  novelty ``1 − best cosine`` and the unit embedding; the prototypes are the labelled set
  k-center starts from.
- detector: each image's boxes down to a score of :data:`LOW_SCORE`. Its uncertainty is
  the highest ``min(s, 1 − s)`` over those boxes: 0.5 for a box the model is as sure of as
  not, near 0 for boxes it is sure of either way. An image with no box above
  :data:`LOW_SCORE` gets 0: the model sees nothing there, and the pool's empty images are
  left to the diversity strategies (they are many, and mostly truly empty). Ties are
  broken by the sum of ``min(s, 1 − s)`` (more doubtful boxes first). The embedding is
  the global average of the backbone's last feature map, as the server logs it (none for
  a TorchScript model, which takes no hooks: only ``uncertainty`` works then). The
  pre-annotation keeps the boxes the server would answer (its score threshold).

A file the model's serving path refuses (unreadable, truncated, too short, …) is skipped
and listed, not fatal: one bad file in a pool of thousands must not stop a round.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from insectml.errors import ConfigError, InputFileError, UserError

log = logging.getLogger(__name__)

SUFFIXES = {"wingbeat": (".wav",), "detector": (".jpg", ".jpeg", ".png"), "fewshot": (".jpg", ".jpeg", ".png")}
LOW_SCORE = 0.05  # the detector boxes the uncertainty looks at (torchvision's own default floor)
IMAGE_BATCH = 16  # few-shot images embedded per forward pass


@dataclass
class PoolItem:
    path: Path
    sha256: str
    logged: dict | None = None  # from a prediction log: the line's time, model and version


@dataclass
class ScoredPool:
    """What the model says about the pool's readable files (``items``, in pool order)."""

    family: str
    classes: list[str]
    items: list[PoolItem]
    answers: list[dict]  # the pre-annotation per item: {"label", "confidence", …} or {"boxes": […]}
    uncertainty: np.ndarray
    tiebreak: np.ndarray | None = None
    tiebreak_name: str = "entropy"
    novelty: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    embedding_kind: str = "l2"  # how strategies.prepare_embeddings compares them
    labelled: np.ndarray | None = None  # the labelled set's embeddings (the gallery's prototypes)
    skipped: list[dict] = field(default_factory=list)  # {"path", "problem"}
    settings: dict = field(default_factory=dict)  # what a reader of selection.json needs to know


# -- listing ------------------------------------------------------------------------------------


def is_log_folder(folder: Path) -> bool:
    """A prediction-log folder: it holds ``predictions.jsonl`` or a rotated one."""
    from insectml.serving.predlog import LOG_NAME

    return any(Path(folder).glob(f"{LOG_NAME}*"))


def list_pool(pool: Path, family: str) -> list[PoolItem]:
    """The pool's files for ``family``, each once (first by path wins among equal contents)."""
    pool = Path(pool)
    if not pool.is_dir():
        raise InputFileError(pool, "pool folder not found")
    items = _from_log(pool, family) if is_log_folder(pool) else _from_folder(pool, family)
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.sha256 not in seen:
            seen.add(item.sha256)
            unique.append(item)
    if len(unique) < len(items):
        log.info("pool: %d file(s) with the same content as another counted once", len(items) - len(unique))
    if not unique:
        raise InputFileError(pool, f"no {'/'.join(SUFFIXES[family])} files to select from in this pool")
    return unique


def _from_folder(pool: Path, family: str) -> list[PoolItem]:
    suffixes = SUFFIXES[family]
    paths = sorted(
        p
        for p in pool.rglob("*")
        if p.suffix.lower() in suffixes
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(pool).parts)
    )
    return [PoolItem(p, file_sha256(p)) for p in paths]


def _from_log(pool: Path, family: str) -> list[PoolItem]:
    """The stored inputs the log's lines of ``family`` name, oldest line first. Stored
    inputs no line names any more (their lines were rotated away) are taken too, by
    suffix, when every line of the log is of ``family`` (a log of one model)."""
    from insectml.serving.predlog import INPUTS, LOG_NAME

    files = sorted(pool.glob(f"{LOG_NAME}.*"), key=lambda p: -_rotation(p)) + [pool / LOG_NAME]
    items, named, families = [], set(), set()
    lines = without_input = 0
    for path in files:
        if not path.is_file() or _rotation(path) < 0:
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line torn by a crash; the monitor reports those
                if not isinstance(record, dict):
                    continue
                families.add(record.get("family"))
                if record.get("family") != family:
                    continue
                lines += 1
                stored = record.get("input_file")
                if not stored:
                    without_input += 1
                    continue
                target = Path(stored) if Path(stored).is_absolute() else pool / stored
                named.add(target.resolve())
                if target.is_file():
                    sha = (record.get("input") or {}).get("sha256") or file_sha256(target)
                    items.append(PoolItem(target, sha, {k: record.get(k) for k in ("time", "model", "version")}))
    if families <= {family} and (pool / INPUTS).is_dir():
        for path in sorted((pool / INPUTS).iterdir()):
            if path.suffix.lower() in SUFFIXES[family] and path.is_file() and path.resolve() not in named:
                items.append(PoolItem(path, file_sha256(path)))
    if not items:
        if lines and without_input == lines:
            raise InputFileError(
                pool, f"the log's {family} lines keep no inputs: start the server with --log-inputs to label them"
            )
        raise InputFileError(pool, f"this prediction log names no stored {family} input")
    return items


def _rotation(path: Path) -> int:
    """0 for predictions.jsonl, N for predictions.jsonl.N, -1 for anything else."""
    suffix = path.name.rpartition(".jsonl")[2]
    if suffix == "":
        return 0
    return int(suffix[1:]) if suffix[1:].isdigit() and suffix[0] == "." else -1


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# -- the model ----------------------------------------------------------------------------------


def model_family(model_dir: Path) -> str:
    """The family of a model folder: its config.json's ``family`` (every training step
    writes it), else what its ``kind`` implies."""
    from insectml.modeldir import read_json

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputFileError(model_dir, "model folder not found")
    config = read_json(model_dir / "config.json", "model config")
    family = config.get("family")
    if family in SUFFIXES:
        return family
    by_kind = {"embedder": "fewshot", "detector": "detector", "classical": "wingbeat", "net": "wingbeat"}
    by_kind["rocket"] = "wingbeat"
    if config.get("kind") in by_kind:
        return by_kind[config["kind"]]
    raise InputFileError(
        model_dir / "config.json", "names no family (wingbeat, detector, fewshot): not a model folder of insectml"
    )


def score_pool(items: list[PoolItem], model_dir: Path, family: str, gallery: Path | None = None) -> ScoredPool:
    """Run the family's model over the pool (a progress bar over the files)."""
    if family == "fewshot":
        return _score_fewshot(items, Path(model_dir), gallery)
    if gallery is not None:
        raise ConfigError(f"--gallery is for a few-shot model; {model_dir} is a {family} model")
    return {"wingbeat": _score_wingbeat, "detector": _score_detector}[family](items, Path(model_dir))


def _progress(items: list, what: str):
    from tqdm import tqdm

    return tqdm(items, desc=what, unit="file", disable=None)


def _skip(skipped: list[dict], item: PoolItem, exc: UserError) -> None:
    skipped.append({"path": str(item.path), "problem": str(exc)})
    log.warning("skipped %s", exc)


def _score_wingbeat(items: list[PoolItem], model_dir: Path) -> ScoredPool:
    from insectml.serving.wingbeat_handler import MAX_FEATURE_SECONDS
    from insectml.wingbeat.features import engineered_features, feature_names
    from insectml.wingbeat.predict import decode_recording, load_predictor

    predictor = load_predictor(model_dir)
    frontend = predictor.frontend
    # the features model reads whole recordings (as the server does, which refuses long ones)
    engineered = predictor.kind == "classical" and getattr(predictor, "inputs", None) == "engineered"
    kept, probs, features, skipped = [], [], [], []
    for item in _progress(items, "scoring recordings"):
        try:
            audio = decode_recording(item.path, frontend, name=str(item.path))
            seconds = len(audio) / frontend.sample_rate
            if engineered and seconds > MAX_FEATURE_SECONDS:
                raise UserError(
                    f"{item.path}: recording is {seconds:.4g} s; this model reads whole recordings and is served "
                    f"at most {MAX_FEATURE_SECONDS:g} s"
                )
        except UserError as exc:
            _skip(skipped, item, exc)
            continue
        feats = engineered_features(audio, frontend)
        if engineered:
            p = predictor.predict_features({"engineered": feats[None]}, np.ones(1, bool))[0]
        else:
            answer = predictor.predict_audio(audio)
            p = np.array([answer[c] for c in predictor.classes])
        kept.append(item)
        probs.append(p)
        features.append(feats)
    if not kept:
        raise _nothing_readable(items, skipped)
    from insectml.active.strategies import entropy, margin_uncertainty

    probs_arr = np.asarray(probs, dtype=np.float64)
    classes = list(predictor.classes)
    answers = [
        {"label": classes[int(p.argmax())], "confidence": round(float(p.max()), 6), "probabilities": _top(classes, p)}
        for p in probs_arr
    ]
    return ScoredPool(
        "wingbeat",
        classes,
        kept,
        answers,
        margin_uncertainty(probs_arr),
        tiebreak=entropy(probs_arr),
        embeddings=np.asarray(features, dtype=np.float64),
        embedding_kind="standardise",
        skipped=skipped,
        settings={"embedding": "engineered features (standardised)", "feature_names": feature_names()},
    )


def _score_fewshot(items: list[PoolItem], model_dir: Path, gallery: Path | None) -> ScoredPool:
    from insectml.active.strategies import entropy, margin_uncertainty
    from insectml.data.images import open_image
    from insectml.fewshot.gallery import UNKNOWN, probabilities
    from insectml.fewshot.predict import FewshotPredictor

    gallery_dir = gallery if gallery is not None else model_dir / "gallery"
    if not gallery_dir.is_dir():
        raise ConfigError(
            f"{model_dir} holds no gallery/: give the few-shot model's gallery with --gallery DIR "
            "(e.g. <results>/fewshot/evaluation/gallery)"
        )
    predictor = FewshotPredictor(model_dir, gallery_dir)
    g = predictor.gallery
    kept, embeddings, skipped, batch = [], [], [], []

    def flush() -> None:
        if batch:
            embeddings.append(predictor.embed_images([image for _, image in batch]))
            kept.extend(item for item, _ in batch)
            batch.clear()

    for item in _progress(items, "scoring images"):
        try:
            batch.append((item, open_image(item.path.read_bytes(), str(item.path))))
        except UserError as exc:
            _skip(skipped, item, exc)
        if len(batch) >= IMAGE_BATCH:
            flush()
    flush()
    if not kept:
        raise _nothing_readable(items, skipped)
    emb = np.concatenate(embeddings).astype(np.float64)
    sims = g.similarities(emb.astype(np.float32)).astype(np.float64)
    probs = probabilities(sims, g.temperature) if g.temperature else None
    answers = []
    for e, s in zip(emb, sims, strict=True):
        best = int(s.argmax())
        answer = g.answer(e.astype(np.float32), 1)
        confidence = answer["top_k"][0].get("probability", answer["score"])
        answers.append(
            {
                "label": answer["label"],
                "confidence": confidence,
                "nearest": g.classes[best],
                "score": answer["score"],
                "unknown": answer["label"] == UNKNOWN,
            }
        )
    return ScoredPool(
        "fewshot",
        list(g.classes),
        kept,
        answers,
        margin_uncertainty(probs if probs is not None else sims),
        tiebreak=entropy(probs) if probs is not None else None,
        novelty=1.0 - sims.max(axis=1),
        embeddings=emb,
        embedding_kind="l2",
        labelled=g.prototypes.astype(np.float64),
        skipped=skipped,
        settings={
            "gallery": str(gallery_dir),
            "threshold": g.threshold,
            "temperature": g.temperature,
            "uncertainty": "margin of the calibrated probabilities"
            if probs is not None
            else "margin of the cosine similarities (the model has no temperature)",
        },
    )


def _score_detector(items: list[PoolItem], model_dir: Path) -> ScoredPool:
    from insectml.detector.predict import DetectorPredictor, decode_image

    predictor = DetectorPredictor(model_dir)
    served = predictor.score_threshold
    predictor.score_threshold = min(LOW_SCORE, served)
    pooled: list = []
    backbone = None if predictor.scripted else getattr(predictor.model, "backbone", None)
    hook = backbone.register_forward_hook(_pool_into(pooled)) if backbone is not None else None
    kept, answers, uncertainty, tiebreak, embeddings, skipped = [], [], [], [], [], []
    try:
        for item in _progress(items, "scoring images"):
            try:
                image = decode_image(item.path.read_bytes(), str(item.path))
            except UserError as exc:
                _skip(skipped, item, exc)
                continue
            pooled.clear()
            # one image per forward pass: a batch pads images to one size, which would
            # change their pooled features
            (boxes,) = predictor.predict([image])
            doubt = [min(b["score"], 1 - b["score"]) for b in boxes if b["score"] >= LOW_SCORE]
            kept.append(item)
            uncertainty.append(max(doubt, default=0.0))
            tiebreak.append(sum(doubt))
            answers.append({"boxes": [b for b in boxes if b["score"] >= served]})
            if pooled:
                embeddings.append(pooled[-1])
    finally:
        if hook is not None:
            hook.remove()
    if not kept:
        raise _nothing_readable(items, skipped)
    return ScoredPool(
        "detector",
        list(predictor.classes),
        kept,
        answers,
        np.asarray(uncertainty, dtype=np.float64),
        tiebreak=np.asarray(tiebreak, dtype=np.float64),
        tiebreak_name="doubt_sum",
        embeddings=np.asarray(embeddings, dtype=np.float64) if len(embeddings) == len(kept) else None,
        embedding_kind="l2",
        skipped=skipped,
        settings={
            "score_threshold": served,
            "uncertainty": f"highest min(s, 1 - s) over the boxes scoring at least {LOW_SCORE} (0 with none)",
            "embedding": "global average of the backbone's last feature map"
            if len(embeddings) == len(kept)
            else "none (a TorchScript model)",
        },
    )


def _pool_into(out: list):
    """A forward hook appending the global average of the backbone's last feature map."""

    def hook(module, inputs, output) -> None:
        last = list(output.values())[-1] if isinstance(output, dict) else output
        out.append(last.mean(dim=(2, 3))[0].detach().numpy().astype(np.float64))

    return hook


def _top(classes: list[str], probs: np.ndarray, k: int = 3) -> dict[str, float]:
    return {classes[i]: round(float(probs[i]), 6) for i in np.argsort(-probs)[:k]}


def _nothing_readable(items: list[PoolItem], skipped: list[dict]) -> InputFileError:
    first = skipped[0]["problem"] if skipped else "no file"
    return InputFileError(
        items[0].path.parent, f"none of the pool's {len(items)} files could be read by the model (first: {first})"
    )
