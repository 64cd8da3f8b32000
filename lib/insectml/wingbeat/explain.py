"""What a wingbeat model looks at, computed with maintained libraries.

- ``cnn`` (a timm backbone on the spectrogram image): Grad-CAM (captum ``LayerGradCam``) on
  the backbone's last spatial layer, for the predicted class, upsampled onto the spectrogram;
- ``gru`` and ``transformer`` (on spectrogram frames): integrated gradients (captum) of the
  predicted class over the input, a frequency × time map;
- ``features`` and the ``baseline`` (scikit-learn on fixed inputs): permutation importance
  (scikit-learn) of each input on the macro-F1, a property of the model rather than of one
  recording;
- ``rocket``: not explained (its inputs are thousands of random convolutions).

:func:`explain_evaluation` adds these to an evaluation (a per-class grid of correct and
wrong recordings with their maps, the most-confused pairs side by side, the importance
plot); :func:`explain_recordings` explains recordings one by one (``insectml wingbeat
explain``). Everything runs on the CPU, deterministically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from insectml.errors import ConfigError
from insectml.explain import RESULTS, Example, class_grid, confused_pairs, normalise_heat, output_paths, pair_grid, pick
from insectml.fileio import open_atomic, write_json_atomic
from insectml.report import Figure, Section

if TYPE_CHECKING:
    import torch

    from insectml.wingbeat.frontend import FrontendConfig
    from insectml.wingbeat.predict import Predictor

log = logging.getLogger(__name__)

GRAD_CAM = "Grad-CAM"
INTEGRATED_GRADIENTS = "integrated gradients"
PERMUTATION = "permutation importance"
# Per net: how its maps are made. Models absent here have no per-recording map.
NET_METHODS = {"cnn": GRAD_CAM, "gru": INTEGRATED_GRADIENTS, "transformer": INTEGRATED_GRADIENTS}
IG_STEPS = 16  # integration steps: a GRU's backward pass is slow on a CPU
MAX_CLASSES = 12  # classes shown in a report's grid: those with the most errors
PER_CLASS = 2  # correct and wrong examples per class
TOP_PAIRS = 3
TOP_FEATURES = 15
REPEATS = 3  # permutation repeats per input
MAX_ROWS = 1000  # recordings permutation importance is computed on (a seeded sample)


def net_name(predictor: Predictor) -> str | None:
    """The registry name (``cnn``, ``gru``, ``transformer``) of a net predictor's model."""
    from insectml.wingbeat.nets import NETS

    model = getattr(predictor, "model", None)
    return next((name for name, cls in NETS.items() if isinstance(model, cls)), None)


def method(predictor: Predictor) -> str | None:
    """How ``predictor``'s answers are explained; None when they are not."""
    if predictor.kind == "net":
        return NET_METHODS.get(net_name(predictor))
    return PERMUTATION if predictor.kind == "classical" else None


# -- maps (nets) --------------------------------------------------------------------------


def _inputs(predictor: Predictor, mel: np.ndarray, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    x = (torch.as_tensor(np.asarray(mel), dtype=torch.float32) - predictor.mean) / predictor.std
    return x, torch.as_tensor(np.asarray(frames), dtype=torch.long)


def spatial_layer(model, x: torch.Tensor, frames: torch.Tensor):
    """The last layer of a ``cnn`` net's timm backbone whose output is still an image
    (channels × height × width, more than one cell), or None (e.g. a vision transformer)."""
    import torch

    net = model.net
    names = [info["module"] for info in getattr(net, "feature_info", [])]
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        net.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))
        )
        for name in names
    ]
    try:
        with torch.no_grad():
            model(x[:1], frames[:1])
    finally:
        for hook in hooks:
            hook.remove()
    spatial = [n for n in names if len(shapes.get(n, ())) == 4 and shapes[n][2] * shapes[n][3] > 1]
    return net.get_submodule(spatial[-1]) if spatial else None


def gradcam(model, x: torch.Tensor, frames: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Grad-CAM of ``targets`` on the backbone's last spatial layer, upsampled (bilinear) to
    the input's n × n_mels × time; ReLU'd, so only evidence for the class shows."""
    from captum.attr import LayerAttribution, LayerGradCam

    layer = spatial_layer(model, x, frames)
    if layer is None:
        raise ConfigError(f"cnn backbone {model.backbone}: no spatial layer for Grad-CAM")
    cam = LayerGradCam(model, layer).attribute(
        x, target=targets, additional_forward_args=(frames,), relu_attributions=True
    )
    return LayerAttribution.interpolate(cam, tuple(x.shape[1:]), interpolate_mode="bilinear")[:, 0]


def integrated_gradients(model, x: torch.Tensor, frames: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Integrated gradients of ``targets`` over the input frames (n × n_mels × time), from a
    baseline of the training data's mean level (0 after normalisation); the magnitude of
    each cell's contribution, for or against."""
    import torch
    from captum.attr import IntegratedGradients

    attributions = IntegratedGradients(model).attribute(
        x,
        baselines=torch.zeros_like(x),
        target=targets,
        additional_forward_args=(frames,),
        n_steps=IG_STEPS,
        internal_batch_size=4 * IG_STEPS,
    )
    return attributions.abs()


_NET_MAPS: dict[str, Callable] = {GRAD_CAM: gradcam, INTEGRATED_GRADIENTS: integrated_gradients}


def heat_maps(
    predictor: Predictor, mel: np.ndarray, frames: np.ndarray, targets: np.ndarray, batch: int = 8
) -> np.ndarray:
    """What made a net predictor answer ``targets`` for each log-mel spectrogram of ``mel``
    (n × n_mels × time, as in a features file): non-negative maps of the same shape."""
    import torch
    from tqdm import tqdm

    how = method(predictor)
    if predictor.kind != "net" or how not in _NET_MAPS:
        raise ConfigError(f"{net_name(predictor) or predictor.kind} model: no per-recording map")
    x, n_frames = _inputs(predictor, mel, frames)
    wanted = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    maps = []
    for start in tqdm(range(0, len(x), batch), desc=how, unit="batch", disable=None):
        part = slice(start, start + batch)
        maps.append(_NET_MAPS[how](predictor.model, x[part], n_frames[part], wanted[part]).detach())
    return torch.cat(maps).numpy().astype(np.float32) if maps else np.zeros_like(mel, dtype=np.float32)


# -- permutation importance (classical models) ---------------------------------------------


def input_names(predictor: Predictor, feats: dict) -> list[str]:
    """Names of a classical model's inputs: the engineered features, or the mel bands (with
    their centre frequency) of the baseline's log spectrum."""
    if predictor.inputs == "engineered":
        return [str(n) for n in feats["feature_names"]]
    return [f"mel band {k} (~{hz:.0f} Hz)" for k, hz in enumerate(band_frequencies(predictor.frontend))]


def band_frequencies(frontend: FrontendConfig) -> np.ndarray:
    """The centre frequency (Hz) of each mel band of ``frontend``."""
    import librosa

    return librosa.mel_frequencies(frontend.n_mels + 2, fmin=frontend.fmin, fmax=frontend.fmax)[1:-1]


def permutation_importances(
    predictor: Predictor, feats: dict, mask: np.ndarray, y_true: np.ndarray, seed: int = 0
) -> list[dict]:
    """How much the macro-F1 on the rows of ``mask`` drops when one input is shuffled
    (scikit-learn's permutation importance, ``REPEATS`` seeded repeats, on at most
    ``MAX_ROWS`` rows): ``[{"input", "importance", "std"}]``, largest first."""
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import f1_score, make_scorer

    from insectml.wingbeat.features import classical_inputs

    x = classical_inputs(feats, predictor.inputs)[mask]
    y = np.asarray(y_true)
    if len(y) > MAX_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(len(y), MAX_ROWS, replace=False))
        x, y = x[keep], y[keep]
    scorer = make_scorer(f1_score, average="macro", labels=list(range(len(predictor.classes))), zero_division=0)
    result = permutation_importance(predictor.estimator, x, y, scoring=scorer, n_repeats=REPEATS, random_state=seed)
    rows = [
        {"input": name, "importance": round(float(m), 6), "std": round(float(s), 6)}
        for name, m, s in zip(
            input_names(predictor, feats), result.importances_mean, result.importances_std, strict=True
        )
    ]
    return sorted(rows, key=lambda r: (-r["importance"], r["input"]))


def plot_importance(rows: list[dict], path: Path, title: str, top: int = TOP_FEATURES) -> Path:
    """Horizontal bars of the ``top`` most important inputs, with their spread over repeats."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = rows[:top][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(shown) + 1.4))
    ax.barh(
        range(len(shown)), [r["importance"] for r in shown], xerr=[r["std"] for r in shown], color="tab:blue", capsize=2
    )
    ax.set_yticks(range(len(shown)), [r["input"] for r in shown], fontsize=8, parse_math=False)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="drop in macro-F1 when the input is shuffled", title=title)
    fig.tight_layout()
    with open_atomic(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=90)
    plt.close(fig)
    return path


# -- an evaluation's explanations ------------------------------------------------------------


def _shown_classes(y_true: np.ndarray, y_pred: np.ndarray, limit: int) -> list[int]:
    """At most ``limit`` classes present in ``y_true``, those with the most errors, in class order."""
    present = np.unique(y_true)
    errors = {int(c): int(((y_true == c) & (y_pred != c)).sum()) for c in present}
    return sorted(sorted(errors, key=lambda c: (-errors[c], c))[:limit])


def explain_evaluation(
    predictor: Predictor,
    feats: dict,
    mask: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    out_dir: Path,
    title: str,
    seed: int = 0,
) -> Section:
    """The "Explanations" section of an evaluation report, its figures written into
    ``out_dir`` (``explain_classes.png``, ``explain_pairs.png``, ``explain_importance.png``)
    with ``explanations.json`` (the examples shown, the confused pairs, the importances).

    Per class (at most ``MAX_CLASSES``, those with the most errors): the ``PER_CLASS`` most
    confident correct and wrong recordings of ``mask``'s rows; then the ``TOP_PAIRS``
    most-confused class pairs, a recording taken for the other class beside one of that
    class recognised."""
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    classes = predictor.classes
    how = method(predictor)
    ids = feats["ids"][mask]
    images = "logmel" in feats  # not in a features file from before spectrograms were kept
    mel, frames = (feats["logmel"][mask], feats["frames"][mask]) if images else (None, None)

    chosen = pick(y_true, y_pred, confidence, per_class=PER_CLASS)
    shown = _shown_classes(y_true, y_pred, MAX_CLASSES)
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(matrix, (y_true, y_pred), 1)
    pairs = []
    for truth, predicted, count in confused_pairs(matrix, classes, top=TOP_PAIRS):
        a, b = classes.index(truth), classes.index(predicted)
        wrong = _most_confident((y_true == a) & (y_pred == b), confidence)
        reference = _most_confident((y_true == b) & (y_pred == b), confidence)
        pairs.append({"truth": truth, "predicted": predicted, "count": count, "wrong": wrong, "reference": reference})

    wanted = sorted(
        {i for c in shown for kind in ("correct", "wrong") for i in chosen[c][kind]}
        | {p[k] for p in pairs for k in ("wrong", "reference") if p[k] is not None}
    )
    heat: dict[int, np.ndarray] = {}
    unmapped = ""
    if how in _NET_MAPS and wanted:
        try:
            maps = heat_maps(predictor, mel[wanted], frames[wanted], y_pred[wanted])
            heat = dict(zip(wanted, maps, strict=True))
        except ConfigError as exc:  # e.g. a transformer backbone: no spatial layer to take Grad-CAM on
            unmapped = f"No map: {exc}."

    def example(i: int) -> Example:
        n = max(int(frames[i]), 1)  # the frames that hold signal; the rest is padding
        return Example(
            image=mel[i, :, :n],
            truth=classes[y_true[i]],
            predicted=classes[y_pred[i]],
            score=float(confidence[i]),
            heat=heat[i][:, :n] if i in heat else None,
            name=str(ids[i]),
            origin="lower",
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    text, figures = [_describe(how), *([unmapped] if unmapped else [])], []
    if not images:
        text.append("The features file holds no spectrograms: no recordings to show.")
    else:
        grid = {classes[c]: {k: [example(i) for i in chosen[c][k]] for k in ("correct", "wrong")} for c in shown}
        figures.append(
            Figure(
                class_grid(
                    grid,
                    out_dir / "explain_classes.png",
                    f"{title}: {how if heat else 'recordings'}",
                    per_class=PER_CLASS,
                ),
                "per true class: the most confident correct (left) and wrong (right) recordings; "
                "spectrograms, low frequencies at the bottom, time to the right"
                + (f"; colour: {how} for the predicted class" if heat else ""),
            )
        )
    if pairs and images:
        figures.append(
            Figure(
                pair_grid(
                    [(example(p["wrong"]), None if p["reference"] is None else example(p["reference"])) for p in pairs],
                    out_dir / "explain_pairs.png",
                    f"{title}: most-confused pairs",
                ),
                "the most-confused class pairs (from the confusion matrix): a recording taken for the other class "
                "(left) beside a recording of that class recognised (right)",
            )
        )
    elif not pairs:
        text.append("No recording was misclassified: no confused pairs to show.")
    importance = []
    if how == PERMUTATION:
        importance = permutation_importances(predictor, feats, mask, y_true, seed=seed)
        figures.append(
            Figure(
                plot_importance(importance, out_dir / "explain_importance.png", f"{title}: permutation importance"),
                f"the {min(TOP_FEATURES, len(importance))} inputs whose shuffling lowers macro-F1 most "
                f"({REPEATS} seeded repeats; bars: spread)",
            )
        )
    write_json_atomic(
        out_dir / RESULTS,
        {
            "method": how,
            "examples": [
                {
                    "id": str(ids[i]),
                    "truth": classes[y_true[i]],
                    "predicted": classes[y_pred[i]],
                    "probability": round(float(confidence[i]), 6),
                }
                for i in wanted
            ],
            "confused_pairs": [
                {k: (str(ids[v]) if k in ("wrong", "reference") and v is not None else v) for k, v in p.items()}
                for p in pairs
            ],
            "importance": importance,
        },
    )
    return Section("Explanations", text=text, figures=figures)


def _most_confident(rows: np.ndarray, confidence: np.ndarray) -> int | None:
    candidates = np.flatnonzero(rows)
    return int(candidates[np.argmax(confidence[candidates])]) if len(candidates) else None


def _describe(how: str | None) -> str:
    return {
        GRAD_CAM: "Grad-CAM (captum) on the backbone's last spatial layer, for the predicted class: the regions of "
        "the spectrogram whose features raised that class's score. The layer is coarse (stride 32), so the map is "
        "a blurred upsampling.",
        INTEGRATED_GRADIENTS: f"Integrated gradients (captum, {IG_STEPS} steps from the training data's mean level) "
        "over the input frames, for the predicted class: how much each time × frequency cell moved that class's "
        "score, for or against (magnitude shown).",
        PERMUTATION: "A model on fixed inputs has no map over the spectrogram: the grid shows the recordings alone. "
        "Permutation importance (scikit-learn) says which inputs it relies on: how much test macro-F1 drops when "
        "one input is shuffled across recordings.",
        None: "This model (MiniRocket: thousands of random convolutions and a linear head) is not explained; the "
        "grid shows the recordings alone.",
    }[how]


# -- recordings one by one (insectml wingbeat explain) ----------------------------------------


def plot_recording(mel: np.ndarray, heat: np.ndarray, frontend: FrontendConfig, path: Path, title: str) -> Path:
    """A recording's log-mel spectrogram (top) and its map over it (bottom), time in seconds,
    frequency in Hz."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = mel.shape[1] * frontend.hop_length / frontend.sample_rate
    extent = (0, seconds, 0, mel.shape[0])
    hz = band_frequencies(frontend)
    ticks = np.linspace(0, mel.shape[0] - 1, 5).round().astype(int)
    fig, axes = plt.subplots(2, 1, figsize=(7, 5.6), sharex=True)
    spec = axes[0].imshow(mel, origin="lower", aspect="auto", cmap="magma", extent=extent)
    fig.colorbar(spec, ax=axes[0], label="dB")
    axes[1].imshow(normalise_heat(mel), origin="lower", aspect="auto", cmap="gray", extent=extent)
    overlay = axes[1].imshow(
        normalise_heat(heat), origin="lower", aspect="auto", cmap="jet", alpha=0.45, extent=extent, vmin=0, vmax=1
    )
    fig.colorbar(overlay, ax=axes[1], label="relevance")
    for ax in axes:
        ax.set_yticks(ticks + 0.5, [f"{hz[t]:.0f}" for t in ticks])
        ax.set_ylabel("Hz (mel scale)")
    axes[0].set_title(title, fontsize=9, loc="left", parse_math=False)  # names as written
    axes[1].set_xlabel("seconds")
    fig.tight_layout()
    with open_atomic(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=90)
    plt.close(fig)
    return path


def explain_recordings(model_dir: Path, wavs: list[Path], out_dir: Path, force: bool = False) -> list[dict]:
    """For each recording: the predicted class, its calibrated probability and the model's
    map (``<stem>_explain.png`` in ``out_dir``), all listed in ``explanations.json``. Every
    recording is read and every output checked before anything is written; an existing
    output is kept unless ``force``."""
    from insectml.modeldir import read_json
    from insectml.wingbeat.frontend import batch_log_mel
    from insectml.wingbeat.predict import decode_recording, load_predictor

    predictor = load_predictor(model_dir)
    how = method(predictor)
    if how not in _NET_MAPS:
        name = read_json(model_dir / "config.json", "model config").get("model", predictor.kind)
        raise ConfigError(
            f"{model_dir}: a {name} model has no per-recording map (explained: {', '.join(NET_METHODS)}; the "
            "features model and the baseline have their permutation importance in their evaluation report)"
        )
    outputs = output_paths(wavs, out_dir, force)
    audios = [decode_recording(wav, predictor.frontend) for wav in wavs]
    answers = [predictor.predict_audio(audio) for audio in audios]  # calibrated, most likely first
    predicted = np.asarray([predictor.classes.index(next(iter(a))) for a in answers])
    mel, frames = batch_log_mel(audios, predictor.frontend)
    maps = heat_maps(predictor, mel, frames, predicted)
    results = []
    for k, (wav, out) in enumerate(zip(wavs, outputs, strict=True)):
        n = max(int(frames[k]), 1)
        label = predictor.classes[predicted[k]]
        p = answers[k][label]
        plot_recording(
            mel[k, :, :n], maps[k, :, :n], predictor.frontend, out, f"{Path(wav).name}: {label} ({p:.2f}) — {how}"
        )
        results.append(
            {"file": str(wav), "predicted": label, "probability": round(p, 6), "method": how, "map": out.name}
        )
    write_json_atomic(out_dir / RESULTS, {"model": str(model_dir), "recordings": results})
    return results
