"""The detector family, declared once: photos + boxes → a generic insect detector →
pseudo-labels → a target-species detector.

Its parameters (the ``detector`` group of ``nextflow_schema.json``), its steps, metrics,
demo, handler and CLI.
"""

from __future__ import annotations

from pathlib import Path

from insectml.detector.formats import FORMATS
from insectml.detector.models import DETECTORS
from insectml.spec import NAME_PATTERN, Family, Group, extra_labels_param, optimiser_params, param, weights_param

PARAMS = Group(
    "detector",
    "Detector family",
    (
        param(
            "detector_input",
            "string",
            "<projectDir>/data/detector",
            "folder holding the box labels and the species folders (manifest paths are relative to it)",
            groovy='"${projectDir}/data/detector"',
            format="directory-path",
            exists=True,
        ),
        param(
            "detector_labels",
            "string",
            "",
            "box labels below detector_input: a Supervisely project, a COCO JSON or its folder, a YOLO "
            "data.yaml or its folder, or a folder of Pascal VOC XML (empty: the one export found in "
            "detector_input or a folder directly below it)",
        ),
        param(
            "detector_format",
            "string",
            "auto",
            "format of detector_labels (auto: detected from the files)",
            steps="validate",
            flag="--format",
            enum=["auto", *FORMATS],
        ),
        param(
            "detector_species",
            "string",
            "species",
            "<species>/<image> folders inside detector_input: images with only a species label, for "
            "pseudo-labels (empty: none)",
        ),
        param(
            "detector_box_policy",
            "string",
            "clip",
            "boxes outside the image or of zero area: clip them (and drop empty ones) with a warning each, "
            "or reject the data",
            steps="validate",
            flag="--box-policy",
            enum=["clip", "reject"],
        ),
        param(
            "detector_near_duplicate_bits",
            "integer",
            4,
            "dHash distance at or below which two images are near-duplicates",
            steps="validate",
            flag="--near-duplicate-bits",
            minimum=0,
        ),
        param(
            "detector_val_fraction",
            "number",
            0.15,
            "share of groups of box-labelled images for validation",
            steps="validate",
            flag="--val-fraction",
            exclusiveMinimum=0,
            exclusiveMaximum=0.5,
        ),
        param(
            "detector_test_fraction",
            "number",
            0.2,
            "share of groups of box-labelled images for test",
            steps="validate",
            flag="--test-fraction",
            exclusiveMinimum=0,
            exclusiveMaximum=0.5,
        ),
        param(
            "detector_max_images",
            "integer",
            0,
            "keep at most N box-labelled and N species images, seeded (0 = all)",
            steps="validate",
            flag="--max-images",
            minimum=0,
        ),
        extra_labels_param(
            "detector",
            "a box of a class the data does not hold is refused (the file and the class named)",
        ),
        param(
            "detector_model",
            "string",
            "ssdlite320_mobilenet_v3_large",
            "torchvision detector for both stages (weights=None)",
            steps="train",
            flag="--model",
            enum=list(DETECTORS),
        ),
        weights_param(
            "detector",
            "weights to initialise the detectors from: a state-dict file, or the folder or NAME of weights "
            "brought in by 'insectml weights import' (a torchvision detector of the same architecture, or "
            "the ImageNet classifier of its backbone); tensors matching by name and shape load, nothing is "
            "downloaded",
        ),
        param(
            "detector_image_size",
            "integer",
            320,
            "input size of the FPN models (SSDlite is fixed at 320)",
            steps="train",
            flag="--image-size",
            minimum=32,
        ),
        param(
            "detector_epochs",
            "integer",
            100,
            "most epochs per stage (early stopping on val mAP@.5 may end sooner)",
            steps="train",
            flag="--epochs",
            minimum=1,
        ),
        param(
            "detector_batch_size",
            "integer",
            8,
            "images per batch",
            steps="train",
            flag="--batch-size",
            minimum=1,
        ),
        param(
            "detector_lr",
            "number",
            0.005,
            "peak AdamW learning rate (warm-up, cosine decay)",
            steps="train",
            flag="--lr",
            exclusiveMinimum=0,
        ),
        *optimiser_params("detector", 0.0001, 2.0),
        param(
            "detector_patience",
            "integer",
            15,
            "early stopping: epochs without a better val mAP@.5",
            steps="train",
            flag="--patience",
            minimum=1,
        ),
        param(
            "detector_pseudo_threshold",
            "number",
            0.5,
            "lowest generic-detector score kept as a pseudo-label",
            steps="pseudolabel",
            flag="--threshold",
            exclusiveMinimum=0,
            exclusiveMaximum=1,
        ),
        param(
            "detector_pseudo_keep",
            "string",
            "top1",
            "per species image: the best box (top1), or every box scoring at least detector_pseudo_threshold (all)",
            steps="pseudolabel",
            flag="--keep",
            enum=["top1", "all"],
        ),
        param(
            "detector_export",
            "string",
            "torchscript",
            "export formats written next to the .mar (comma-separated: torchscript, onnx; the .mar holds TorchScript)",
            steps="export",
            flag="--export",
            pattern="^(torchscript|onnx)(,(torchscript|onnx))*$",
        ),
        param(
            "detector_score_threshold",
            "number",
            0.3,
            "served detectors return boxes scoring at least this",
            steps="package",
            flag="--score-threshold",
            minimum=0,
            maximum=1,
        ),
        param(
            "detector_archive_name",
            "string",
            "detector",
            "archives are named <name>_generic.mar and <name>_target.mar",
            pattern=NAME_PATTERN,
        ),
    ),
    config="conf/detector/params.config",
    note="Detector family (--task detector): parameter defaults.",
)


def write_demo(out_dir: Path, size: int, seed: int) -> Path:
    from insectml.data.detector_demo import write_detector_demo

    return write_detector_demo(out_dir, n_box_images=size, n_species_images=size // 2, seed=seed)


FAMILY = Family(
    name="detector",
    help="photos + boxes → insect detectors",
    group=PARAMS,
    steps=("validate", "train", "evaluate", "pseudolabel", "export", "package"),
    headline=("map_50", "map"),
    sweep_metric=(),  # not swept: two stages train in sequence
    handler="insectml.serving.detector_handler",
    cli="insectml.detector.cli",
    demo=write_demo,
    demo_size=param("detector_images", "integer", 240, "box-labelled detector images", flag="--detector-images"),
)
