"""Export a trained detector: TorchScript always, ONNX on request, each checked
against the eager model on a sample image before it is written."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from insectml.detector.models import load_detector
from insectml.errors import UserError
from insectml.fileio import write_json_atomic
from insectml.modeldir import file_sha256

FORMATS = ("torchscript", "onnx")


def sample_image(size: int = 320, seed: int = 0) -> torch.Tensor:
    """A fixed pseudo-random RGB image in [0, 1] (CHW) for export checks."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(3, size, size + 64, generator=gen)


def export_detector(model_dir: Path, out_dir: Path, name: str, formats: tuple[str, ...] = ("torchscript",)) -> dict:
    """Write ``<name>.torchscript.pt`` (and ``<name>.onnx``) into ``out_dir``; return
    ``{format: path}`` plus the largest box difference from the eager model."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"--export: unknown format(s) {', '.join(unknown)} (choose from: {', '.join(FORMATS)})")
    model, _classes, _config = load_detector(model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = sample_image()
    with torch.no_grad():
        expected = model([image])[0]
    written: dict = {}
    with warnings.catch_warnings():
        # torch.jit is deprecated upstream but is the format MMS loads; tracing for ONNX
        # trips torchvision's own tensor-copy warnings. Neither is the user's to act on.
        warnings.simplefilter("ignore", (FutureWarning, UserWarning, DeprecationWarning))
        written.update(_export_all(model, image, expected, out_dir, name, formats))
    write_json_atomic(out_dir / f"{name}.export.json", written)
    return written


def _export_all(model, image, expected, out_dir: Path, name: str, formats: tuple[str, ...]) -> dict:
    written: dict = {}
    if "torchscript" in formats or not formats:
        path = out_dir / f"{name}.torchscript.pt"
        scripted = torch.jit.script(model)
        tmp = path.with_suffix(".tmp")
        scripted.save(str(tmp))
        loaded = torch.jit.load(str(tmp))
        with torch.no_grad():
            _, got = loaded([image])
        written["torchscript_max_abs_diff"] = _check(expected, got[0], "TorchScript")
        tmp.replace(path)
        written["torchscript"] = str(path)
        # what 'package' records in the archive's lineage.json, and loading verifies
        written["torchscript_sha256"] = file_sha256(path)
    if "onnx" in formats:
        written.update(_export_onnx(model, image, expected, out_dir / f"{name}.onnx"))
    return written


def _check(expected: dict, got: dict, what: str, atol: float = 1e-3) -> float:
    """Same scores (sorted), and every expected box whose score is above the cut-off
    (so its selection is unambiguous; an untrained model ties everywhere) found in
    ``got`` with the same label; returns the largest box-coordinate difference."""
    from torchvision.ops import box_iou

    a = torch.sort(expected["scores"], descending=True).values
    b = torch.sort(got["scores"], descending=True).values
    if a.shape != b.shape or not torch.allclose(a, b, atol=atol):
        raise UserError(f"{what} export differs from the eager model on the sample image (scores)")
    if a.numel() == 0:
        return 0.0
    sure = expected["scores"] > float(a[-1]) + atol
    diff = 0.0
    if sure.any():
        ious = box_iou(expected["boxes"][sure], got["boxes"])
        same = expected["labels"][sure][:, None] == got["labels"][None, :]
        best = torch.where(same, ious, torch.zeros_like(ious)).argmax(dim=1)
        matched = got["boxes"][best]
        diff = float((expected["boxes"][sure] - matched).abs().max())
    if diff > atol * max(1.0, float(expected["boxes"].abs().max())):
        raise UserError(f"{what} export differs from the eager model on the sample image (max box diff {diff:.3g})")
    return diff


def _export_onnx(model, image: torch.Tensor, expected: dict, path: Path) -> dict:
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        raise UserError(f"--export onnx needs the onnx and onnxruntime packages ({exc.name} is missing)") from None
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(
        model,
        ([image],),
        str(tmp),
        input_names=["image"],
        output_names=["boxes", "scores", "labels"],  # the order of torchvision's output dict
        dynamic_axes={"image": {1: "height", 2: "width"}, "boxes": {0: "n"}, "scores": {0: "n"}, "labels": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    boxes, scores, labels = session.run(None, {session.get_inputs()[0].name: image.numpy()})
    got = {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels), "scores": torch.from_numpy(scores)}
    diff = _check(expected, got, "ONNX")
    tmp.replace(path)
    return {"onnx": str(path), "onnx_max_abs_diff": diff, "onnx_sha256": file_sha256(path)}
