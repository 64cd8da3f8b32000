"""The run-wide parameter groups, declared once: general settings (families to run, output,
seed, resource caps) and Slurm/GPU settings. Each family declares its own group in
``insectml/<family>/family.py``; ``FAMILY_NAMES`` is the one list of them.

A leaf beside :mod:`insectml.spec`: library configs take their defaults from here
(``GENERAL.default("seed")``) without importing any family.
"""

from __future__ import annotations

from insectml.spec import Group, param

# The model families, in the order they are listed everywhere; each is the package
# insectml.<name> with a family.py descriptor (insectml.families loads them).
FAMILY_NAMES = ("wingbeat", "detector", "fewshot")
# What --task runs: the families, and self-supervised pretraining (insectml.pretrain), which
# makes weights for them and serves nothing.
TASK_NAMES = (*FAMILY_NAMES, "pretrain")

GENERAL = Group(
    "general",
    "General",
    (
        param(
            "task",
            "string",
            "wingbeat",
            f"what to run, comma-separated: the model families {', '.join(FAMILY_NAMES)}, or pretrain "
            "(self-supervised pretraining of an image backbone on unlabelled images)",
            x_choices=list(TASK_NAMES),
        ),
        param("outdir", "string", "results", "where results, models, archives and run reports are published"),
        param(
            "seed",
            "integer",
            42,
            "seed for splits and training; same data + params + seed on CPU gives the same metrics",
            steps=("validate", "train"),
            flag="--seed",
            in_args=False,  # modules pass meta.seed
            minimum=0,
        ),
        param(
            "duplicates",
            "string",
            "group",
            "identical or near-duplicate images (identical recordings) in different groups: merge those groups "
            "so every split keeps them on one side (group), keep one file of each cluster (drop), or refuse the "
            "data (error); each merge or drop is a warning in validation_report.json",
            steps="validate",
            flag="--duplicates",
            enum=["group", "drop", "error"],
        ),
        param(
            "publish_dir_mode",
            "string",
            "copy",
            "how results are published",
            enum=["copy", "symlink", "link", "rellink", "copyNoFollow", "move"],
        ),
        param(
            "max_cpus",
            "integer",
            None,
            "most CPUs one task may ask for [default: this machine's cores]",
            groovy="Runtime.runtime.availableProcessors()",
            minimum=1,
        ),
        param(
            "max_memory",
            "string",
            "16.GB",
            "most memory one task may ask for",
            pattern=r"^\d+(\.\d+)?\.?\s*(K|M|G|T)?B$",
        ),
        param(
            "max_time",
            "string",
            "24.h",
            "longest time one task may ask for",
            pattern=r"^\d+(\.\d+)?\.?\s*(s|m|h|d)$",
        ),
        param(
            "chunk_size",
            "integer",
            5000,
            "files per task in the steps that open every file (every family's validation checks; wingbeat's "
            "features): "
            "the files are cut into chunks of this many, one task each, side by side on a cluster, then gathered; "
            "results do not depend on it (5000 recordings: a few minutes of features)",
            minimum=1,
        ),
        param(
            "cv_folds",
            ("string", "integer"),
            "auto",
            "grouped k-fold cross-validation of the non-test data: every model trained once per fold (tasks side "
            "by side), chosen by its out-of-fold macro-F1, calibrated on its out-of-fold predictions, refit on all "
            "non-test data and scored once on test; 0 = one train/val split (chosen by validation macro-F1); "
            "auto: wingbeat, 5 folds when some class has fewer than 8 groups outside test, else 0; few-shot (folds of "
            "classes), 5 folds (at most classes / 5) when fewer than 50 classes lie outside test, else 0",
            flag="--cv-folds",
            in_args=False,  # the workflow passes it to CV_PLAN ('insectml cv plan')
            pattern="^(auto|[0-9]+)$",
            minimum=0,
        ),
        param("help", "boolean", False, "print this help and exit"),
        param(
            "checkpoint_dir",
            "string",
            None,
            "where training steps keep their per-epoch checkpoints (a folder per settings + data key), so a "
            "retried task continues from its last epoch; on shared storage for Slurm [default: <workDir>/checkpoints]",
            format="directory-path",
        ),
        param(
            "sweep",
            "string",
            None,
            "a sweep file (conf/sweeps/*.yaml): one training task per configuration, the best by validation "
            'metric evaluated on test (see "Sweeps" in README.md)',
            format="file-path",
            exists=True,
        ),
        # An active-learning round (subworkflows/local/active_round): 'insectml select' with
        # the model each family run packages; --<family>_extra_labels brings the labels back.
        param(
            "al_round",
            "boolean",
            False,
            "an active-learning round: after training, run each family's packaged model over al_pool, pick "
            "al_budget samples worth labelling and write them, with the model's answers as pre-annotations, as a "
            "Supervisely project to <outdir>/<family>/active/round_<al_round_number>/; the labelled export comes "
            "back as --<family>_extra_labels",
        ),
        param(
            "al_pool",
            "string",
            None,
            "with al_round: a folder of unlabelled files (wingbeat: .wav; detector, fewshot: images) or the "
            "prediction-log folder of a server started with --log-inputs",
            format="directory-path",
            exists=True,
        ),
        param(
            "al_budget",
            "integer",
            50,
            "with al_round: how many samples to select for labelling",
            steps="select",
            flag="--budget",
            minimum=1,
        ),
        param(
            "al_strategy",
            "string",
            "hybrid",
            "with al_round: uncertainty (smallest margin between the two best classes), diversity (k-center on "
            "the model's embeddings), novelty (farthest from the few-shot gallery: fewshot only), hybrid "
            "(k-center among the 3 x al_budget most uncertain, for few-shot the most novel)",
            steps="select",
            flag="--strategy",
            enum=["uncertainty", "diversity", "novelty", "hybrid"],
        ),
        param(
            "al_round_number",
            "integer",
            1,
            "with al_round: the labelling round, recorded in the project and, once merged, in the manifest, "
            "dataset.json and the model card",
            steps="select",
            flag="--round",
            minimum=1,
        ),
    ),
    config="conf/params.config",
    note="Parameters every project has: run-wide settings, Slurm and GPUs.",
)

CLUSTER = Group(
    "cluster",
    "Slurm and GPUs",
    (
        param(
            "slurm_queue",
            "string",
            None,
            "-profile slurm: partition of every task [default: the cluster's default partition]",
        ),
        param(
            "slurm_gpu_queue",
            "string",
            None,
            "-profile slurm: partition of GPU tasks (training) when --gpus > 0 [default: --slurm_queue]",
        ),
        param("slurm_account", "string", None, "-profile slurm: --account of every job"),
        param(
            "slurm_options",
            "string",
            None,
            "-profile slurm: more sbatch options, appended as written; give them with '=', since Nextflow reads a "
            "value starting with -- as the next flag: --slurm_options='--qos=high --exclude=node12'",
        ),
        param(
            "slurm_scratch",
            ("boolean", "string"),
            None,
            "-profile slurm: run tasks in node-local scratch: 'true' ($TMPDIR) or a folder; outputs are copied back "
            "to the work folder [default: off]",
        ),
        param(
            "slurm_before_script",
            "string",
            None,
            "-profile slurm: shell run before every task on the compute node (e.g. 'module load python/3.11; "
            "source /shared/insectml/venv/bin/activate')",
        ),
        param(
            "gpus",
            "integer",
            0,
            "GPUs per training task (-profile gpu sets 1); on Slurm: --gres=gpu:N and --slurm_gpu_queue",
            minimum=0,
        ),
    ),
    config="conf/params.config",
)
