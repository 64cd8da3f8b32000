"""The params of ``--task pretrain``: self-supervised pretraining of an image backbone on a
folder of unlabelled images (not a model family: it serves nothing, it makes weights the
few-shot and detector families start from)."""

from __future__ import annotations

from insectml.spec import Group, optimiser_params, param, weights_param

PARAMS = Group(
    "pretrain",
    "Self-supervised pretraining",
    (
        param(
            "pretrain_input",
            "string",
            "<projectDir>/data/fewshot/images",
            "folder of unlabelled images, searched recursively (jpg, jpeg, png, tif, tiff, bmp, webp); folder "
            "names and labels are ignored",
            groovy='"${projectDir}/data/fewshot/images"',
            steps="train",
            flag="--images",
            in_args=False,  # the module passes its staged input folder
            format="directory-path",
            exists=True,
        ),
        param(
            "pretrain_name",
            "string",
            "ssl",
            "NAME of the weights written (results/pretrain/weights/NAME, the layout of 'insectml weights import')",
            steps="train",
            flag="--name",
            pattern="^[A-Za-z0-9][A-Za-z0-9._-]*$",
        ),
        param(
            "pretrain_method",
            "string",
            "simclr",
            "self-supervised objective: simclr (two augmented views of an image pulled together, the other "
            "images of the batch pushed apart; NT-Xent loss)",
            steps="train",
            flag="--method",
            enum=["simclr"],
        ),
        param(
            "pretrain_backbone",
            "string",
            "resnet10t",
            "timm architecture to pretrain (pretrained=False); use the few-shot family's fewshot_backbone",
            steps="train",
            flag="--backbone",
        ),
        weights_param(
            "pretrain",
            "weights to continue from (an imported NAME, its folder or a state dict of the same timm "
            "architecture): domain-adaptive pretraining of, e.g., ImageNet weights on your photos",
            nullable=True,
        ),
        param(
            "pretrain_image_size",
            "integer",
            64,
            "side of the augmented crops in pixels (use the size the few-shot family trains at)",
            steps="train",
            flag="--image-size",
            minimum=16,
        ),
        param(
            "pretrain_max_images",
            "integer",
            0,
            "use at most N images, a seeded sample (0 = all)",
            steps="train",
            flag="--max-images",
            minimum=0,
        ),
        param("pretrain_epochs", "integer", 100, "epochs", steps="train", flag="--epochs", minimum=1),
        param(
            "pretrain_batch_size",
            "integer",
            128,
            "images per batch (each seen as two views; larger batches give the loss more negatives)",
            steps="train",
            flag="--batch-size",
            minimum=2,
        ),
        param(
            "pretrain_lr", "number", 0.001, "peak AdamW learning rate", steps="train", flag="--lr", exclusiveMinimum=0
        ),
        *optimiser_params("pretrain", 0.0001, 2.0),
        param(
            "pretrain_temperature",
            "number",
            0.2,
            "temperature of the NT-Xent loss",
            steps="train",
            flag="--temperature",
            exclusiveMinimum=0,
        ),
    ),
    config="conf/pretrain/params.config",
    note="Self-supervised pretraining params (--task pretrain).",
)
