import json

import pytest
from insectml.params import ParamsError, help_text, validate_params


@pytest.fixture
def schema(repo_root):
    return repo_root / "nextflow_schema.json"


def base(tmp_path):
    return {"task": "wingbeat", "outdir": "results", "seed": 1, "wingbeat_input": str(tmp_path)}


def test_defaults_pass(schema, tmp_path):
    validate_params(schema, json.dumps(base(tmp_path)))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed": "abc"}, "--seed: 'abc' is not of type integer"),
        ({"task": "wingbeat,detectr"}, "--task: detectr not among"),
        ({"wingbeat_input": "/no/such/dir"}, "--wingbeat_input: folder not found"),
        ({"wingbeat_feature_model": "xgb"}, "--wingbeat_feature_model: 'xgb' is not one of"),
        ({"wingbeat_test_fraction": 0.7}, "--wingbeat_test_fraction"),
        ({"wingbeat_epoch": 3}, "--wingbeat_epoch: unknown parameter"),
        ({"slurm_options": True}, "--slurm_options: has no value (a value that starts with '-' goes after '='"),
        ({"gpus": -1}, "--gpus"),
        ({"sweep": "/no/such.yaml"}, "--sweep: file not found"),
    ],
)
def test_bad_params_are_named(schema, tmp_path, change, message):
    with pytest.raises(ParamsError) as info:
        validate_params(schema, json.dumps({**base(tmp_path), **change}))
    assert str(info.value).startswith(message)


def test_only_the_families_that_run_need_their_folders(schema, tmp_path):
    """A fresh clone has no demo data: --task detector must not look for data/wingbeat."""
    missing = {"wingbeat_input": "/no/such/dir", "fewshot_input": "/no/such/dir", "fewshot_images": "/no/such"}
    validate_params(
        schema, json.dumps({**base(tmp_path), **missing, "task": "detector", "detector_input": str(tmp_path)})
    )
    with pytest.raises(ParamsError, match="--detector_input: folder not found"):
        validate_params(schema, json.dumps({**base(tmp_path), "task": "wingbeat,detector", "detector_input": "/no/x"}))


def test_help_lists_every_param(schema):
    text = help_text(schema)
    assert "--wingbeat_feature_model" in text and "--outdir" in text


def test_slurm_params_pass(schema, tmp_path):
    cluster = {"slurm_queue": "cpu", "slurm_account": "lab", "slurm_options": "--qos=high", "gpus": 2}
    validate_params(schema, json.dumps({**base(tmp_path), **cluster, "slurm_scratch": True}))


def test_an_active_learning_round_with_a_pool_passes(schema, tmp_path):
    validate_params(schema, json.dumps({**base(tmp_path), "al_round": True, "al_pool": str(tmp_path)}))


@pytest.mark.parametrize(
    "change, message",
    [
        ({}, "--al_round: needs --al_pool, the folder of unlabelled files (or prediction log) to select from"),
        ({"al_pool": "/no/such/pool"}, "--al_pool: folder not found: /no/such/pool"),
        ({"task": "pretrain", "al_pool": "."}, "--al_round: --task pretrain trains no model family to select with"),
    ],
)
def test_an_active_learning_round_that_cannot_run_is_one_line(schema, tmp_path, change, message):
    with pytest.raises(ParamsError) as info:
        validate_params(schema, json.dumps({**base(tmp_path), "al_round": True, **change}))
    assert str(info.value) == message


def test_novelty_needs_the_fewshot_gallery(schema, tmp_path):
    params = {**base(tmp_path), "al_round": True, "al_pool": str(tmp_path), "al_strategy": "novelty"}
    with pytest.raises(ParamsError, match="^--al_strategy novelty: .* which wingbeat has none"):
        validate_params(schema, json.dumps(params))
    validate_params(schema, json.dumps({**params, "task": "fewshot", "fewshot_input": str(tmp_path)}))
