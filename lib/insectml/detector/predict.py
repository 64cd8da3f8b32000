"""Detections for raw image bytes: the code path of the served detector.

Loads the TorchScript export when the model folder holds one (``model.torchscript.pt``,
as inside a ``.mar``), else the eager model from ``weights.pt``. Several images are
run as one batch (torchvision detectors take a list of differently sized images).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from insectml.data.images import open_image

TORCHSCRIPT = "model.torchscript.pt"


def decode_image(body: bytes, name: str = "request body") -> torch.Tensor:
    """JPEG/PNG/… bytes → float CHW tensor in [0, 1]; anything else is a UserError."""
    rgb = open_image(body, name)
    data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3)
    return data.permute(2, 0, 1).contiguous().float().div_(255)


class DetectorPredictor:
    """The detector in ``model_dir``, its weights (the TorchScript export, or weights.pt)
    checked against the sha256 its lineage.json records before they are loaded
    (:func:`insectml.modeldir.verify_weights`). TorchScript runs the code it holds: load
    only models from a trusted source."""

    def __init__(self, model_dir: Path, score_threshold: float | None = None) -> None:
        from insectml.errors import InputFileError
        from insectml.modeldir import read_json, verify_weights

        if not (model_dir / "labels.json").is_file():
            raise InputFileError(model_dir / "labels.json", "missing from the model directory")
        self.classes: list[str] = read_json(model_dir / "labels.json", "class list", kind=list)
        serving = (
            read_json(model_dir / "serving.json", "serving settings") if (model_dir / "serving.json").is_file() else {}
        )
        self.score_threshold = score_threshold if score_threshold is not None else serving.get("score_threshold", 0.3)
        self.scripted = (model_dir / TORCHSCRIPT).is_file()
        weights = model_dir / (TORCHSCRIPT if self.scripted else "weights.pt")
        if weights.is_file():  # else load_detector names the missing file
            verify_weights(weights)
        if self.scripted:
            import torchvision  # noqa: F401 - registers torchvision::nms, which the TorchScript model calls

            with warnings.catch_warnings():  # torch.jit is deprecated upstream; MMS serves it fine
                warnings.simplefilter("ignore", FutureWarning)
                self.model = torch.jit.load(str(model_dir / TORCHSCRIPT), map_location="cpu").eval()
        else:
            from insectml.detector.models import load_detector

            self.model = load_detector(model_dir)[0]

    @torch.no_grad()
    def predict(self, images: list[torch.Tensor]) -> list[list[dict]]:
        """One list of ``{"label", "score", "box": [x1, y1, x2, y2]}`` per image, best first."""
        if not images:
            return []
        with warnings.catch_warnings():  # "SSD always returns a (Losses, Detections) tuple in scripting"
            warnings.simplefilter("ignore", UserWarning)
            out = self.model(images)
        detections = out[1] if self.scripted else out
        answers = []
        for det in detections:
            keep = det["scores"] >= self.score_threshold
            answers.append(
                [
                    {
                        "label": self.classes[int(label) - 1],
                        "score": round(float(score), 4),
                        "box": [round(float(v), 1) for v in box],
                    }
                    for box, label, score in zip(
                        det["boxes"][keep], det["labels"][keep], det["scores"][keep], strict=True
                    )
                ]
            )
        return answers
