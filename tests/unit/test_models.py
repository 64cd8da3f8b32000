import pytest
from insectml.errors import ConfigError
from insectml.wingbeat.models import create_classical, parse_overrides


def test_overrides_are_typed_from_the_estimator():
    pipe = create_classical("random_forest", 1, {"n_estimators": "17", "max_depth": "5"})
    params = pipe.named_steps["model"].get_params()
    assert (params["n_estimators"], params["max_depth"]) == (17, 5)


def test_unknown_hyperparameter_is_named():
    with pytest.raises(ConfigError, match="--set n_trees: not a parameter of random_forest"):
        create_classical("random_forest", 1, {"n_trees": "5"})


def test_unknown_model_lists_choices():
    with pytest.raises(ConfigError, match="unknown model 'xgb'"):
        create_classical("xgb", 1, {})


def test_override_needs_key_and_value():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["n_estimators"])
