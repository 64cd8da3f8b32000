"""The few-shot family, declared once: hundreds of similar classes with a few labels each →
an embedder, prototypes, open set and clusters.

Its parameters (the ``fewshot`` group of ``nextflow_schema.json``), its steps, metrics,
demo, handler and CLI.
"""

from __future__ import annotations

from pathlib import Path

from insectml.fewshot.names import LOSSES, MINERS
from insectml.spec import NAME_PATTERN, Family, Group, extra_labels_param, optimiser_params, param, weights_param

PARAMS = Group(
    "fewshot",
    "Few-shot family",
    (
        param(
            "fewshot_input",
            "string",
            "<projectDir>/data/fewshot",
            "folder the few-shot image paths are relative to",
            groovy='"${projectDir}/data/fewshot"',
        ),
        param(
            "fewshot_images",
            "string",
            "images",
            "<class>/<image> folders inside fewshot_input (ignored when fewshot_labels is set)",
        ),
        param(
            "fewshot_labels",
            ("string", "null"),
            None,
            "CSV with columns path,label (paths relative to fewshot_input) instead of class folders",
        ),
        param(
            "fewshot_max_classes",
            "integer",
            0,
            "keep at most N classes, seeded (0 = all)",
            steps="validate",
            flag="--max-classes",
            minimum=0,
        ),
        param(
            "fewshot_val_fraction",
            "number",
            0.15,
            "share of classes held out as novel validation classes (early stopping, open-set threshold)",
            steps="validate",
            flag="--val-fraction",
            exclusiveMinimum=0,
            exclusiveMaximum=0.5,
        ),
        param(
            "fewshot_test_fraction",
            "number",
            0.25,
            "share of classes held out as novel test classes",
            steps="validate",
            flag="--test-fraction",
            exclusiveMinimum=0,
            exclusiveMaximum=0.5,
        ),
        param(
            "fewshot_support",
            "integer",
            2,
            "support images per novel class (at most the class's image count minus 1; the rest are queries)",
            steps="validate",
            flag="--support",
            minimum=1,
        ),
        param(
            "fewshot_near_duplicate_bits",
            "integer",
            4,
            "dHash distance at or below which two images are near-duplicates (within a class: one group, on one "
            "side of the support/query cut; across classes: a warning)",
            steps="validate",
            flag="--near-duplicate-bits",
            minimum=0,
        ),
        extra_labels_param(
            "fewshot",
            "a class the data does not hold joins the training classes; an item of a class held out for "
            "validation or test is left out (a warning), so those classes stay unseen in training",
        ),
        param(
            "fewshot_backbone",
            "string",
            "resnet10t",
            "timm backbone (pretrained=False) without fewshot_weights or with a bare state dict; imported weights "
            "bring their own architecture",
            steps="train",
            flag="--backbone",
        ),
        weights_param(
            "fewshot",
            "weights to start from: a NAME of 'insectml weights import' (timm, or open_clip such as BioCLIP), its "
            "folder, or a local state dict (a timm backbone's, or a whole embedder's); nothing is downloaded",
            nullable=True,
        ),
        param(
            "fewshot_mode",
            "string",
            "finetune",
            "what training changes: frozen = nothing, the embedding is the backbone's normalised features (needs "
            "fewshot_weights; the right choice for a foundation model such as BioCLIP); probe = only a projection "
            "head on the frozen backbone (few images, or to test the weights quickly); finetune = everything, "
            "the backbone at fewshot_backbone_lr_scale of the learning rate when it starts from weights (many "
            "images per class, or pictures unlike the weights' own)",
            steps="train",
            flag="--mode",
            enum=["frozen", "probe", "finetune"],
        ),
        param(
            "fewshot_backbone_lr_scale",
            "number",
            0.1,
            "finetune from fewshot_weights: the backbone's learning rate as a share of fewshot_lr (the head "
            "trains at fewshot_lr)",
            steps="train",
            flag="--backbone-lr-scale",
            exclusiveMinimum=0,
            maximum=1,
        ),
        param("fewshot_dim", "integer", 128, "embedding size", steps="train", flag="--dim", minimum=2),
        param(
            "fewshot_image_size",
            "integer",
            64,
            "input side in pixels",
            steps="train",
            flag="--image-size",
            minimum=16,
        ),
        param(
            "fewshot_loss",
            "string",
            "proto",
            "metric-learning loss: proto (episodic prototypical) or, from pytorch-metric-learning, supcon "
            "(supervised contrastive), arcface or cosface (additive angular / cosine margin)",
            steps="train",
            flag="--loss",
            enum=list(LOSSES),
        ),
        param(
            "fewshot_miner",
            "string",
            "none",
            "pair miner of the supcon, arcface and cosface losses (multisimilarity is pytorch-metric-learning's)",
            steps="train",
            flag="--miner",
            enum=list(MINERS),
        ),
        param(
            "fewshot_shots",
            "integer",
            1,
            "proto loss: support images per class in a training episode (the rest of the class's batch images "
            "are queries)",
            steps="train",
            flag="--shots",
            minimum=1,
        ),
        param("fewshot_epochs", "integer", 40, "most epochs", steps="train", flag="--epochs", minimum=1),
        param(
            "fewshot_classes_per_batch",
            "integer",
            16,
            "classes per batch (episode width for proto)",
            steps="train",
            flag="--classes-per-batch",
            minimum=2,
        ),
        param(
            "fewshot_per_class",
            "integer",
            3,
            "images per class in a batch (proto: fewshot_shots support images, the rest queries)",
            steps="train",
            flag="--per-class",
            minimum=2,
        ),
        param(
            "fewshot_lr",
            "number",
            0.001,
            "peak AdamW learning rate",
            steps="train",
            flag="--lr",
            exclusiveMinimum=0,
        ),
        *optimiser_params("fewshot", 0.0001, 1.0),
        param(
            "fewshot_patience",
            "integer",
            10,
            "early stopping: epochs without a better 5-way 1-shot episode accuracy on the novel validation classes",
            steps="train",
            flag="--patience",
            minimum=1,
        ),
        param(
            "fewshot_val_episodes",
            "integer",
            300,
            "novel-class validation episodes per epoch (early stopping)",
            steps="train",
            flag="--val-episodes",
            minimum=10,
        ),
        param(
            "fewshot_episodes",
            "integer",
            600,
            "evaluation episodes per N-way K-shot setting",
            steps="evaluate",
            flag="--episodes",
            minimum=10,
        ),
        param(
            "fewshot_map",
            "string",
            "tsne",
            "method of the 2-D embedding map in the report",
            steps="evaluate",
            flag="--map",
            enum=["tsne", "umap"],
        ),
        param(
            "fewshot_top_k",
            "integer",
            5,
            "classes per served answer",
            steps="package",
            flag="--top-k",
            minimum=1,
        ),
        param(
            "fewshot_archive_name",
            "string",
            "fewshot",
            "name of the .mar (and of the served model)",
            steps="package",
            flag="--name",
            in_args=False,  # the module passes it as ext.prefix
            pattern=NAME_PATTERN,
        ),
    ),
    config="conf/fewshot/params.config",
    note="Few-shot family (--task fewshot): parameter defaults.",
)


def write_demo(out_dir: Path, size: int, seed: int) -> Path:
    from insectml.data.fewshot_demo import write_fewshot_demo

    return write_fewshot_demo(out_dir, seed=seed, body_plan_limit=size)


FAMILY = Family(
    name="fewshot",
    help="few labels, many similar classes → embedding, prototypes, clusters",
    group=PARAMS,
    steps=("validate", "train", "evaluate", "package"),
    headline=("top1", "top5", "episodes_5way_1shot", "open_set_auroc"),
    sweep_metric=("best_val_episode_acc",),
    handler="insectml.serving.fewshot_handler",
    cli="insectml.fewshot.cli",
    demo=write_demo,
    demo_size=param(
        "fewshot_body_plans",
        "integer",
        0,
        "few-shot: only the first N body plans, 6 classes each (0: all 54)",
        flag="--fewshot-body-plans",
    ),
)
