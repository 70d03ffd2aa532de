"""The SageMaker contract, hyperparameters and the MetricDefinitions regexes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lambdaforge.recipes import get_recipe, hyperparameter_spec
from lambdaforge.recipes.errors import HyperparameterError
from lambdaforge.recipes.hparams import HyperparameterSpec, parse_cli_pairs, parse_hyperparameters
from lambdaforge.training import METRIC_DEFINITIONS, TrainingEnv, metric_line, parse_line
from lambdaforge.training.contract import decode_hyperparameters
from lambdaforge.training.errors import TrainingError


def test_environment_variables_win_over_the_config_files(tmp_path: Path) -> None:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"epochs": "\"3\""}))
    env = TrainingEnv.from_environ({
        "LAMBDAFORGE_OPT_ML": str(tmp_path),
        "SM_HPS": json.dumps({"recipe": "text", "epochs": 5}),
        "SM_CHANNEL_TRAIN": "/data/train",
        "SM_CHANNEL_EXTRA": "/data/extra",
        "SM_NUM_GPUS": "4",
        "SM_HOSTS": json.dumps(["algo-1", "algo-2"]),
        "SM_CURRENT_HOST": "algo-2",
        "SM_MODEL_DIR": "/model",
        "TRAINING_JOB_NAME": "job-7",
    })
    assert env.hyperparameters == {"recipe": "text", "epochs": 5}
    assert env.channels == {"train": Path("/data/train"), "extra": Path("/data/extra")}
    assert (env.num_gpus, env.hosts, env.current_host) == (4, ("algo-1", "algo-2"), "algo-2")
    assert env.model_dir == Path("/model")
    assert env.job_name == "job-7"
    assert env.failure_file == tmp_path / "output" / "failure"


def test_files_of_the_opt_ml_tree_are_read_when_variables_are_absent(tmp_path: Path) -> None:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (tmp_path / "input" / "data" / "train").mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"epochs": "\"3\"", "lr": "0.01", "recipe": "digits"}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    env = TrainingEnv.from_environ({"LAMBDAFORGE_OPT_ML": str(tmp_path), "SM_NUM_GPUS": "0"})
    assert env.hyperparameters == {"epochs": "3", "lr": 0.01, "recipe": "digits"}
    assert env.channel("train") == tmp_path / "input" / "data" / "train"
    assert env.checkpoint_dir == tmp_path / "checkpoints"


def test_missing_channel_is_a_clear_error(tmp_path: Path) -> None:
    env = TrainingEnv.from_environ({"LAMBDAFORGE_OPT_ML": str(tmp_path), "SM_CHANNEL_A": "/a",
                                    "SM_CHANNEL_B": "/b", "SM_NUM_GPUS": "0"})
    with pytest.raises(TrainingError, match="no 'train' data channel"):
        env.channel("train")


def test_sagemaker_string_values_are_decoded() -> None:
    raw = {"epochs": "\"5\"", "lr": "0.1", "flag": "true", "name": "plain", "obj": "{\"a\": 1}"}
    assert decode_hyperparameters(raw) == {"epochs": "5", "lr": 0.1, "flag": True, "name": "plain",
                                           "obj": "{\"a\": 1}"}


def test_hyperparameters_are_typed_and_validated() -> None:
    recipe = get_recipe("digits")
    hp = parse_hyperparameters(recipe, {"epochs": "3", "lr": "0.5", "dropout": "0.1", "augment": "false",
                                        "sagemaker_program": "train.py", "recipe": "digits"})
    assert (hp.epochs, hp.lr, hp.get("dropout"), hp.get("augment")) == (3, 0.5, 0.1, False)
    with pytest.raises(HyperparameterError, match="unknown hyperparameter 'nope'"):
        parse_hyperparameters(recipe, {"nope": 1})
    with pytest.raises(HyperparameterError, match="epochs"):
        parse_hyperparameters(recipe, {"epochs": "two"})
    with pytest.raises(HyperparameterError, match="at least 1"):
        parse_hyperparameters(recipe, {"batch_size": 0})
    with pytest.raises(HyperparameterError, match="is not key=value"):
        parse_cli_pairs(["epochs"])


def test_inside_the_job_toolkit_keys_are_tolerated_but_ranges_apply() -> None:
    recipe = get_recipe("digits")
    hp = parse_hyperparameters(recipe, {"sagemaker_region": "eu-west-1", "_tuning_objective_metric": "x"})
    assert hp.epochs == 25
    with pytest.raises(HyperparameterError, match=r"dropout=0.99 is out of range \[0, 0.95\]"):
        parse_hyperparameters(recipe, {"dropout": "0.99"})
    with pytest.raises(HyperparameterError, match=r"epochs=5000 is out of range \[1, 1000\]"):
        parse_hyperparameters(recipe, {"epochs": 5000})


@pytest.mark.parametrize(("raw", "message"), [
    ({"epochs": 10**400}, r"epochs=<an integer of 401 digits> is out of range \[1, 1000\]"),
    ({"seed": -(10**400)}, r"seed=<an integer of 401 digits> is out of range \[0, 4.29497e\+09\]"),
    ({"lr": 10**400}, r"lr=<an integer of 401 digits>: the number is too large"),
    ({"dropout": 10**400}, r"dropout=<an integer of 401 digits>: the number is too large"),  # the recipe's key
    ({"epochs": "9" * 5000}, r"epochs='9{36}\.\.\.: expected int, got 5000 characters"),
])
def test_numbers_no_float_can_hold_are_refused_not_overflowed(raw: dict[str, object], message: str) -> None:
    """float(10**400) and math.isfinite(10**400) raise OverflowError: it must be a HyperparameterError,
    at the trigger (an uploader's marker) and inside the job alike."""
    from lambdaforge.recipes.hparams import check_requested

    with pytest.raises(HyperparameterError, match=f"m: hyperparameter {message}"):
        check_requested("digits", raw, hyperparameter_spec("digits"), source="m")
    with pytest.raises(HyperparameterError, match=message):
        parse_hyperparameters(get_recipe("digits"), raw)


def test_the_built_in_recipes_declare_their_hyperparameters_where_the_trigger_reads_them() -> None:
    # the trigger has no numpy or torch: checking a marker must not import a recipe module
    code = ("import sys; from lambdaforge.recipes import hyperparameter_spec; "
            "from lambdaforge.recipes.hparams import check_requested; "
            "print(check_requested('text', {'train_layers': '2'}, hyperparameter_spec('text'), source='m')); "
            "print(sorted(m for m in ('numpy', 'torch', 'lambdaforge.recipes.text') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["{'train_layers': 2}", "[]"]
    for name in ("digits", "text"):
        recipe = get_recipe(name)
        assert hyperparameter_spec(name) == HyperparameterSpec(dict(recipe.defaults), dict(recipe.bounds))


def test_metric_definitions_match_the_printed_lines() -> None:
    line = metric_line(epoch=3, step=120, train_loss=0.012345, samples_per_sec=1534.2, lr=0.001)
    assert parse_line(line) == {"train:epoch": 3.0, "train:loss": 0.012345, "train:samples_per_sec": 1534.2}
    line = metric_line(epoch=3, step=120, test_metric=0.9861, test_accuracy=0.9861)
    assert parse_line(line) == {"train:epoch": 3.0, "test:metric": 0.9861, "test:accuracy": 0.9861}
    assert parse_line(metric_line(parity_max_abs_diff=3.2e-06)) == {"export:parity_max_abs_diff": 3.2e-06}
    # a line without the prefix is not a metric, even if it looks like one
    assert parse_line("train_loss=0.5") == {}
    for definition in METRIC_DEFINITIONS:  # SageMaker limits: name <= 255, regex <= 500 characters
        assert len(definition["Name"]) <= 255 and len(definition["Regex"]) <= 500
        re.compile(definition["Regex"])


def test_the_leader_host_is_the_rendezvous_unless_master_addr_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from lambdaforge.training import distributed

    env = TrainingEnv.from_environ({"SM_HOSTS": json.dumps(["algo-1", "algo-2"]), "SM_CURRENT_HOST": "algo-2",
                                    "SM_NUM_GPUS": "0"})
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert distributed.master_addr(env) == "algo-1"  # what a SageMaker cluster resolves
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # the local executor: every host is this machine
    assert distributed.master_addr(env) == "127.0.0.1"
    single = TrainingEnv.from_environ({"SM_HOSTS": json.dumps(["algo-1"]), "SM_NUM_GPUS": "0"})
    monkeypatch.delenv("MASTER_ADDR")
    assert distributed.master_addr(single) == "127.0.0.1"
