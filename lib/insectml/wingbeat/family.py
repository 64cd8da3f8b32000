"""The wingbeat family, declared once: sensor recordings (WAV) → species.

Its parameters (the ``wingbeat`` group of ``nextflow_schema.json``), its steps, metrics,
demo, handler and CLI. Everything that names a wingbeat param or model derives from here.
"""

from __future__ import annotations

from pathlib import Path

from insectml.spec import NAME_PATTERN, Demo, Family, Group, extra_labels_param, optimiser_params, param, weights_param
from insectml.wingbeat.models import CLASSICAL_MODELS

# The models trained side by side; `insectml wingbeat train --model` builds each by name.
MEMBERS = ("features", "rocket", "cnn", "gru", "transformer")
# Always trained beside them and shown as a row of every comparison: the mean log-mel power
# spectrum + logistic regression. A model that does not beat it has learnt nothing useful.
BASELINE = "baseline"

PARAMS = Group(
    "wingbeat",
    "Wingbeat family",
    (
        param(
            "wingbeat_input",
            "string",
            "<projectDir>/data/wingbeat",
            "folder of recordings: the labels CSV's paths are relative to it (csv layout) or it holds one folder "
            "per species (folders layout); an optional classes.txt lists the known species",
            groovy='"${projectDir}/data/wingbeat"',
            format="directory-path",
            exists=True,
        ),
        param(
            "wingbeat_labels",
            "string",
            None,
            "labels CSV (columns: path, species, and the group column) [default: <wingbeat_input>/labels.csv]",
            format="file-path",
            exists=True,
        ),
        param(
            "wingbeat_layout",
            "string",
            "csv",
            "csv: a labels CSV lists the recordings; folders: <species>/<...>/<file>.wav below wingbeat_input "
            "(the public Wingbeats layout; set wingbeat_group_by to path:N)",
            steps="validate",
            flag="--layout",
            in_args=False,
            enum=["csv", "folders"],
        ),
        param(
            "wingbeat_group_by",
            "string",
            "event",
            "what groups recordings for the split (recording event, sensor, session): a CSV column, or path:N, "
            "the N-th path component below wingbeat_input (0 = the species folder)",
            steps="validate",
            flag="--group-by",
        ),
        param(
            "wingbeat_sample_rate",
            "integer",
            8000,
            "required sample rate of the recordings, Hz (at least 1000)",
            steps="validate",
            flag="--sample-rate",
            minimum=1000,
        ),
        param(
            "wingbeat_resample",
            "boolean",
            False,
            "resample recordings of other rates to wingbeat_sample_rate with soxr (also in serving) instead of "
            "refusing them",
            steps="validate",
            flag="--resample",
        ),
        param(
            "wingbeat_min_seconds",
            "number",
            0.1,
            "refuse recordings shorter than this, s: in validation, and in prediction and serving with the value "
            "the model was validated with",
            steps="validate",
            flag="--min-seconds",
            minimum=0,
        ),
        param(
            "wingbeat_val_fraction",
            "number",
            0.15,
            "share of groups for validation, in (0, 0.5)",
            steps="validate",
            flag="--val-fraction",
            exclusiveMinimum=0,
            exclusiveMaximum=0.5,
        ),
        param(
            "wingbeat_test_fraction",
            "number",
            0.2,
            "share of groups for test, in (0, 0.5)",
            steps="validate",
            flag="--test-fraction",
            exclusiveMinimum=0,
            exclusiveMaximum=0.5,
        ),
        param(
            "wingbeat_max_per_class",
            "integer",
            0,
            "keep at most N recordings per species, seeded (0 = all)",
            steps="validate",
            flag="--max-per-class",
            minimum=0,
        ),
        extra_labels_param(
            "wingbeat",
            "a species the data does not hold is refused (the file and the species named)",
        ),
        param(
            "wingbeat_n_mels",
            "integer",
            64,
            "mel bands of the log-mel spectrogram (at least 8)",
            steps="features",
            flag="--n-mels",
            minimum=8,
        ),
        param(
            "wingbeat_max_seconds",
            "number",
            1.5,
            "spectrograms are centre-cropped or zero-padded to this length",
            steps="features",
            flag="--max-seconds",
            exclusiveMinimum=0,
        ),
        param(
            "wingbeat_models",
            "string",
            ",".join(MEMBERS),
            "models to train side by side, comma-separated: features (engineered features + classical "
            "classifier), rocket (MiniRocket features of the log-mel frames + logistic regression), cnn (timm "
            "backbone on the log-mel image), gru (bidirectional GRU over frames), transformer (encoder over "
            "frames); the baseline (log power spectrum + logistic regression) is always trained beside them; the "
            "best by cross-validation (or validation) macro-F1 is packaged",
            x_choices=list(MEMBERS),
        ),
        param(
            "wingbeat_feature_model",
            "string",
            "random_forest",
            "classical classifier of the features model",
            steps="train",
            flag="--classifier",
            enum=list(CLASSICAL_MODELS),
        ),
        param(
            "wingbeat_model_params",
            "string",
            "",
            "hyperparameters of the features model's classifier, KEY=VALUE comma-separated "
            "(e.g. n_estimators=500,max_depth=12); unknown keys are refused with the list of valid ones",
            steps="train",
        ),
        param(
            "wingbeat_epochs",
            "integer",
            20,
            "most training epochs of the neural models (early stopping may end sooner)",
            steps="train",
            flag="--epochs",
            minimum=1,
        ),
        param(
            "wingbeat_batch_size",
            "integer",
            32,
            "batch size of the neural models",
            steps="train",
            flag="--batch-size",
            minimum=1,
        ),
        param(
            "wingbeat_lr",
            "number",
            0.002,
            "peak AdamW learning rate of the neural models (linear warm-up over wingbeat_warmup_epochs, then "
            "cosine decay)",
            steps="train",
            flag="--lr",
            exclusiveMinimum=0,
        ),
        *optimiser_params("wingbeat", 0.01, 1.0, of=" of the neural models"),
        param(
            "wingbeat_patience",
            "integer",
            6,
            "stop a neural model after N epochs without a better validation macro-F1",
            steps="train",
            flag="--patience",
            minimum=1,
        ),
        param(
            "wingbeat_backbone",
            "string",
            "mobilenetv3_small_050",
            "timm backbone of the cnn model (e.g. resnet10t), always created with pretrained=False",
            steps="train",
            flag="--backbone",
        ),
        weights_param(
            "wingbeat",
            "weights to initialise the neural models from (layers that match by name and shape): a state-dict "
            "file, or the folder or NAME of timm weights brought in by 'insectml weights import' (the cnn model "
            "then takes their architecture, its first convolution summed to one channel); nothing is downloaded",
        ),
        param(
            "wingbeat_mixup",
            "number",
            0.0,
            "mixup of the neural models: each training batch mixed with itself shuffled, spectrograms and one-hot "
            "targets alike, in a Beta(a, a) proportion; this is a (0 = off; 0.2 to 0.4 is usual)",
            steps="train",
            flag="--mixup",
            minimum=0,
        ),
        param(
            "wingbeat_pitch_jitter",
            "number",
            0.0,
            "pitch jitter in the neural models' augmentation: every frequency of a training spectrogram scaled by "
            "a random factor within 1 ± this (0.08: ±8%, as a session's temperature shifts the wingbeat "
            "frequency; 0 = off)",
            steps="train",
            flag="--pitch-jitter",
            minimum=0,
            exclusiveMaximum=0.5,
        ),
        param(
            "wingbeat_swa",
            "boolean",
            False,
            "stochastic weight averaging of the neural models: keep the average of the weights of the last quarter "
            "of the epochs (at least 2), trained at a quarter of the peak learning rate; every model then trains "
            "all wingbeat_epochs (no early stopping)",
            steps="train",
            flag="--swa",
        ),
        param(
            "wingbeat_archive_name",
            "string",
            "wingbeat",
            "model name of the .mar archive (the /predictions/<name> URL)",
            steps="package",
            flag="--name",
            in_args=False,  # the module passes it as ext.prefix
            pattern=NAME_PATTERN,
        ),
    ),
    config="conf/wingbeat/params.config",
    note="Wingbeat family (--task wingbeat): parameter defaults.",
)


def write_demo(out_dir: Path, size: int, seed: int) -> Path:
    from insectml.data.demo import write_wingbeat_demo

    return write_wingbeat_demo(out_dir, per_class=size, seed=seed)


def write_hard_demo(out_dir: Path, size: int, seed: int) -> Path:
    from insectml.data.demo import write_wingbeat_hard_demo

    return write_wingbeat_hard_demo(out_dir, per_session=size, seed=seed)


FAMILY = Family(
    name="wingbeat",
    help="wingbeat recordings → species",
    group=PARAMS,
    steps=("validate", "features", "train", "evaluate", "compare", "package"),
    headline=("macro_f1", "accuracy"),
    sweep_metric=("val", "macro_f1"),
    handler="insectml.serving.wingbeat_handler",
    cli="insectml.wingbeat.cli",
    demo=write_demo,
    demo_size=param("wingbeat_per_class", "integer", 120, "recordings per species", flag="--wingbeat-per-class"),
    more_demos=(
        Demo(
            "wingbeat_hard",
            write_hard_demo,
            param(
                "wingbeat_hard_per_session",
                "integer",
                30,
                "recordings per session of the hard wingbeat set OUT/wingbeat_hard (6 species × 4 sessions, "
                "one species per session; 0 skips it)",
                flag="--wingbeat-hard-per-session",
            ),
        ),
    ),
    members=MEMBERS,
)
