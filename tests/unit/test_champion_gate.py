"""Champion/challenger: a candidate is scored against the live model on its own held-out rows and on
the live model's (the trusted ones), and a candidate with a new contract is refused unless allowed.

Tiny linear ONNX models (built with onnx.helper, no torch) stand in for trained ones, so each case
sets exactly how good the candidate and the live model are; expected numbers are computed from
the same weights with numpy, not written in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lambdaforge.artifact import Manifest, Preprocessing, TensorSpec, TrainingInfo, open_model_dir, write_manifest
from lambdaforge.artifact.modeldir import ModelDir
from lambdaforge.pipeline.quantize_step import recipe_floor
from lambdaforge.pipeline.settings import PipelineSettings
from lambdaforge.quantize import AccuracyGate, LiveGate, LiveModel, QuantizeConfig, quantize_model_dir
from lambdaforge.quantize.champion import incomparable
from lambdaforge.recipes import get_recipe
from lambdaforge.recipes.errors import HyperparameterError
from lambdaforge.recipes.hparams import Hyperparameters, parse_hyperparameters

LABELS = ("a", "b", "c")
ROWS = 240
RNG = np.random.default_rng(7)
FEATURES = RNG.normal(size=(ROWS, 4)).astype(np.float32)
TRUTH = FEATURES[:, :3].argmax(-1).astype(np.int64)
PERFECT = np.vstack([np.eye(3), np.zeros((1, 3))]).astype(np.float32)  # logits = the first three features
# A poorer model: each logit mixes in the other features, so some rows are misread.
NOISY = (PERFECT + 0.9 * np.random.default_rng(3).normal(size=(4, 3))).astype(np.float32)


def accuracy(weights: np.ndarray, labels: tuple[str, ...] = LABELS) -> float:
    """What the model with these weights scores on the held-out rows, labels matched by name."""
    names = np.array(labels)[(FEATURES @ weights).argmax(-1)]
    return float((names == np.array(LABELS)[TRUTH]).mean())


def in_order(labels: tuple[str, ...], truth: np.ndarray = TRUTH) -> np.ndarray:
    """Labels (indices into LABELS) as indices into `labels`, matched by name: how a model's eval file holds them."""
    if set(labels) != set(LABELS):
        return truth
    index = {name: i for i, name in enumerate(labels)}
    return np.array([index[LABELS[t]] for t in truth], dtype=np.int64)


def write_model(root: Path, weights: np.ndarray, labels: tuple[str, ...] = LABELS, *,
                eval_rows: tuple[np.ndarray, np.ndarray] | None = None) -> ModelDir:
    """A model directory; its eval file holds `eval_rows` (features, labels in LABELS' indices), else every row."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    root.mkdir(parents=True)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["logits"], name="head")], "linear",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(labels)])],
        [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(root / "model.onnx"))
    features, truth = eval_rows if eval_rows is not None else (FEATURES, TRUTH)
    np.savez(root / "eval.npz", features=features, labels=in_order(labels, truth))
    np.savez(root / "calibration.npz", features=FEATURES[:64], labels=TRUTH[:64])
    write_manifest(root, Manifest(
        recipe="toy", inputs=(TensorSpec(name="features", dtype="float32", shape=("batch", 4)),),
        outputs=(TensorSpec(name="logits", dtype="float32", shape=("batch", len(labels))),), labels=labels,
        preprocessing=Preprocessing(kind="tensor"), calibration_file="calibration.npz",
        metrics={"accuracy": accuracy(weights, labels)},
        training=TrainingInfo(recipe="toy", job_name="job", dataset_version="d")))
    return open_model_dir(root)


def live(root: Path, weights: np.ndarray, labels: tuple[str, ...] = LABELS, *,
         allow_contract_change: bool = False) -> LiveGate:
    return LiveGate(live=LiveModel(model_dir=write_model(root, weights, labels), name="toy-v1"),
                    allow_contract_change=allow_contract_change)


CFG = QuantizeConfig(mode="dynamic", latency_runs=3)


def test_a_candidate_worse_than_live_is_refused_and_both_are_reported(tmp_path: Path) -> None:
    assert accuracy(PERFECT) - accuracy(NOISY) > 0.05  # the case this test is about
    md = write_model(tmp_path / "candidate", NOISY)
    out = quantize_model_dir(md, tmp_path / "out", CFG, live_gate=live(tmp_path / "live", PERFECT))
    report = out.report
    assert out.model_dir is None and report.gate_passed is False
    assert "below the live model toy-v1" in report.gate_reason
    comparison = report.live
    assert comparison is not None and comparison.status == "compared"
    assert comparison.live_metric == pytest.approx(accuracy(PERFECT))
    assert comparison.candidate == "fp32" and comparison.candidate_metric == pytest.approx(accuracy(NOISY))
    assert report.fp32.live_delta == pytest.approx(accuracy(NOISY) - accuracy(PERFECT))
    expected_agreement = float(((FEATURES @ NOISY).argmax(-1) == TRUTH).mean())  # live is always right here
    assert comparison.agreement == pytest.approx(expected_agreement)
    markdown = (tmp_path / "out" / "quantization_report.md").read_text()
    assert "## Against the live model" in markdown and "| live | toy-v1 |" in markdown
    # both row sets side by side: here the live model's rows are the same as the candidate's
    assert f"on the candidate's {ROWS} rows" in markdown and f"on the live model's {ROWS} rows" in markdown
    assert comparison.live_rows == comparison.candidate_rows == ROWS
    assert comparison.live_metric_on_live_rows == pytest.approx(accuracy(PERFECT))
    assert comparison.candidate_metric_on_live_rows == pytest.approx(accuracy(NOISY))


def test_the_fp32_fallback_goes_through_the_same_comparison(tmp_path: Path) -> None:
    """auto mode: when no INT8 candidate passes, fp32 used to be compared with itself and always shipped."""
    md = write_model(tmp_path / "candidate", NOISY)
    out = quantize_model_dir(md, tmp_path / "out", QuantizeConfig(mode="auto", latency_runs=3),
                             live_gate=live(tmp_path / "live", PERFECT))
    assert out.model_dir is None and out.report.chosen == "none" and out.report.fallback is True
    assert "fp32 fallback fails the gate too" in out.report.gate_reason
    assert "below the live model" in out.report.gate_reason
    assert all(not c.passed for c in out.report.candidates)


def test_a_candidate_as_good_as_live_ships_with_both_side_by_side(tmp_path: Path) -> None:
    md = write_model(tmp_path / "candidate", PERFECT)
    out = quantize_model_dir(md, tmp_path / "out", CFG, live_gate=live(tmp_path / "live", PERFECT))
    report = out.report
    assert out.model_dir is not None and report.gate_passed, report.gate_reason
    chosen = report.chosen_result
    assert report.live is not None and report.live.candidate == chosen.name != "fp32"
    assert report.live.candidate_metric == chosen.metric
    assert report.live.agreement == chosen.live_agreement and chosen.live_agreement is not None
    assert chosen.live_delta == pytest.approx((chosen.metric or 0.0) - accuracy(PERFECT))


def test_the_first_run_has_only_the_floor_and_says_so(tmp_path: Path) -> None:
    md = write_model(tmp_path / "candidate", NOISY)
    floor = accuracy(NOISY) + 0.05
    refused = quantize_model_dir(md, tmp_path / "refused", CFG.with_gate(min_metric=floor),
                                 live_gate=LiveGate(live=None, floor_source="recipe toy"))
    assert refused.model_dir is None and "below the floor" in refused.report.gate_reason
    assert refused.report.live is not None and refused.report.live.status == "no-live-model"
    assert "first run" in refused.report.live.note and refused.report.live.floor == pytest.approx(floor)
    assert "first run" in (tmp_path / "refused" / "quantization_report.md").read_text()
    shipped = quantize_model_dir(md, tmp_path / "shipped", CFG.with_gate(min_metric=accuracy(NOISY) - 0.05),
                                 live_gate=LiveGate(live=None))
    assert shipped.model_dir is not None, shipped.report.gate_reason


SWAP = [1, 0, 2]  # classes a and b trade places (the 3<->8 of digits)
SWAPPED = PERFECT[:, SWAP].copy()  # reads an `a` row as `b` and a `b` row as `a`


def test_consistently_swapped_labels_are_refused_on_the_live_models_rows(tmp_path: Path) -> None:
    """The upload swaps a and b in train and test alike: on its own rows the candidate is perfect and the
    live model looks poor, so it passes "as better than live" there. The live model's rows refuse it."""
    relabelled = np.array(SWAP)[TRUTH]  # the candidate's own eval rows, labelled the way it answers
    md = write_model(tmp_path / "candidate", SWAPPED, eval_rows=(FEATURES, relabelled))
    out = quantize_model_dir(md, tmp_path / "out", CFG, live_gate=live(tmp_path / "live", PERFECT))
    report = out.report
    assert report.fp32.metric == 1.0  # on its own rows
    assert report.fp32.live_delta is not None and report.fp32.live_delta > 0.5  # "better than live" there
    assert out.model_dir is None and report.gate_passed is False
    assert f"on the live model toy-v1's {ROWS} held-out rows" in report.gate_reason
    assert "below the live model toy-v1" in report.gate_reason
    on_live_rows = accuracy(SWAPPED)  # the candidate against the truth the live model went live with
    assert on_live_rows < 0.5
    assert report.fp32.live_rows_metric == pytest.approx(on_live_rows)
    assert report.fp32.live_rows_delta == pytest.approx(on_live_rows - 1.0)
    comparison = report.live
    assert comparison is not None and comparison.status == "compared"
    assert comparison.live_metric_on_live_rows == 1.0
    assert comparison.candidate_metric_on_live_rows == pytest.approx(on_live_rows)
    assert comparison.candidate_metric == 1.0
    assert comparison.live_metric == pytest.approx(float((relabelled == TRUTH).mean()))  # only its `c` rows


def test_training_rows_copied_into_the_test_split_are_refused_on_the_live_models_rows(tmp_path: Path) -> None:
    """The upload's test split holds only rows the candidate learned (here: the rows it gets right), so it
    scores 1.0 there, ties the live model and clears a floor it would fail on honest rows."""
    right = (FEATURES @ NOISY).argmax(-1) == TRUTH
    md = write_model(tmp_path / "candidate", NOISY, eval_rows=(FEATURES[right], TRUTH[right]))
    floor = 0.9
    assert accuracy(NOISY) < floor
    out = quantize_model_dir(md, tmp_path / "out", CFG.with_gate(min_metric=floor),
                             live_gate=live(tmp_path / "live", PERFECT))
    report = out.report
    assert report.fp32.metric == 1.0 and report.fp32.live_delta == 0.0  # its own rows: as good as live
    assert out.model_dir is None and report.gate_passed is False
    assert f"on the live model toy-v1's {ROWS} held-out rows" in report.gate_reason
    assert report.fp32.live_rows_metric == pytest.approx(accuracy(NOISY))
    assert report.live is not None and report.live.candidate_rows == int(right.sum())
    assert report.live.live_rows == ROWS


def test_a_different_label_set_is_refused_unless_the_contract_change_is_allowed(tmp_path: Path) -> None:
    md = write_model(tmp_path / "candidate", NOISY)
    refused = quantize_model_dir(md, tmp_path / "refused", CFG,
                                 live_gate=live(tmp_path / "live", PERFECT, labels=("a", "b", "z")))
    report = refused.report
    assert refused.model_dir is None and report.gate_passed is False and report.chosen == "none"
    assert "the label set differs from live" in report.gate_reason and "'z'" in report.gate_reason
    assert "must be promoted deliberately" in report.gate_reason and "ALLOW_CONTRACT_CHANGE" in report.gate_reason
    assert report.candidates == []  # nothing was worth building
    assert report.live is not None and report.live.status == "not-comparable"
    assert "label set differs" in (tmp_path / "refused" / "quantization_report.md").read_text()

    allowed = quantize_model_dir(md, tmp_path / "allowed", CFG, live_gate=live(
        tmp_path / "live2", PERFECT, labels=("a", "b", "z"), allow_contract_change=True))
    assert allowed.model_dir is not None, allowed.report.gate_reason  # a better live model on other labels
    assert allowed.report.live is not None and allowed.report.live.status == "not-comparable"
    assert "label set differs" in allowed.report.live.note and "only the floor applies" in allowed.report.live.note
    assert allowed.report.live.live_metric is None
    assert all(c.live_delta is None and c.live_rows_delta is None for c in allowed.report.candidates)


def test_a_changed_input_spec_is_refused_by_default(tmp_path: Path) -> None:
    md = write_model(tmp_path / "candidate", PERFECT)
    gate = live(tmp_path / "live", PERFECT)
    assert gate.live is not None
    wider = gate.live.model_dir.manifest.model_copy(update={"inputs": (
        TensorSpec(name="features", dtype="float32", shape=("batch", 5)),)})
    changed = LiveGate(live=LiveModel(model_dir=_with_manifest(gate.live.model_dir, wider), name="toy-v1"))
    out = quantize_model_dir(md, tmp_path / "out", CFG, live_gate=changed)
    assert out.model_dir is None and "inputs differ" in out.report.gate_reason
    assert "must be promoted deliberately" in out.report.gate_reason


def _with_manifest(md: ModelDir, manifest: Manifest) -> ModelDir:
    """The same directory with another manifest (the gate reads only the live model's manifest before refusing)."""
    import dataclasses

    return dataclasses.replace(md, manifest=manifest)


def test_the_allow_contract_change_setting_is_explicit_then_env_then_false(monkeypatch: pytest.MonkeyPatch) -> None:
    from lambdaforge import envvars
    from lambdaforge.errors import ConfigurationError

    monkeypatch.delenv(envvars.ALLOW_CONTRACT_CHANGE, raising=False)
    assert PipelineSettings.from_env().allow_contract_change is False
    monkeypatch.setenv(envvars.ALLOW_CONTRACT_CHANGE, "true")
    assert PipelineSettings.from_env().allow_contract_change is True
    assert PipelineSettings.from_env(allow_contract_change=False).allow_contract_change is False
    monkeypatch.setenv(envvars.ALLOW_CONTRACT_CHANGE, "false")
    assert PipelineSettings.from_env().allow_contract_change is False
    monkeypatch.setenv(envvars.ALLOW_CONTRACT_CHANGE, "maybe")
    with pytest.raises(ConfigurationError, match=envvars.ALLOW_CONTRACT_CHANGE):
        PipelineSettings.from_env()


def test_the_template_passes_allow_contract_change_to_the_quantize_function() -> None:
    from lambdaforge.project import load_template

    template = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
    param = template["Parameters"]["AllowContractChange"]
    assert param["Default"] == "false" and param["AllowedValues"] == ["false", "true"]
    env = template["Resources"]["QuantizeFunction"]["Properties"]["Environment"]["Variables"]
    assert env["ALLOW_CONTRACT_CHANGE"] == {"Ref": "AllowContractChange"}


def test_the_template_passes_min_agreement_to_the_quantize_function() -> None:
    import re

    from lambdaforge.project import load_template

    template = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
    param = template["Parameters"]["MinAgreement"]
    assert param["Default"] == "0.98" and re.fullmatch(param["AllowedPattern"], "0.95")
    assert not re.fullmatch(param["AllowedPattern"], "98") and not re.fullmatch(param["AllowedPattern"], "1.5")
    env = template["Resources"]["QuantizeFunction"]["Properties"]["Environment"]["Variables"]
    assert env["MIN_AGREEMENT"] == {"Ref": "MinAgreement"}


def test_labels_in_another_order_are_matched_by_name(tmp_path: Path) -> None:
    md = write_model(tmp_path / "candidate", PERFECT)
    reordered = ("c", "b", "a")
    gate = live(tmp_path / "live", PERFECT[:, ::-1].copy(), labels=reordered)  # the same model, columns reversed
    out = quantize_model_dir(md, tmp_path / "out", CFG, live_gate=gate)
    assert out.report.live is not None and out.report.live.status == "compared"
    assert out.report.live.live_metric == pytest.approx(accuracy(PERFECT[:, ::-1], reordered)) == 1.0
    assert out.report.fp32.live_agreement == 1.0
    # the live model's own rows (the same rows here) hold its label indices: matched by name too
    assert out.report.live.live_metric_on_live_rows == 1.0
    assert out.report.live.candidate_metric_on_live_rows == out.report.live.candidate_metric
    assert out.report.fp32.live_rows_agreement == 1.0 and out.model_dir is not None, out.report.gate_reason


def test_incomparable_names_the_difference(tmp_path: Path) -> None:
    base = write_model(tmp_path / "a", PERFECT).manifest
    assert incomparable(base, base) is None
    text = base.model_copy(update={"preprocessing": Preprocessing(kind="text", tokenizer="t.json", max_tokens=8)})
    assert "preprocessing differs" in (incomparable(base, text) or "")
    wider = base.model_copy(update={"inputs": (TensorSpec(name="features", dtype="float32", shape=("batch", 5)),)})
    assert "inputs differ" in (incomparable(base, wider) or "")


def test_check_live_allows_max_drop_and_no_more() -> None:
    gate = AccuracyGate(max_drop=0.01)
    assert gate.check_live(0.95, 0.945, "x-v1")[0] is True
    assert gate.check_live(0.95, 0.99, "x-v1")[0] is True  # better than live
    passed, reason = gate.check_live(0.95, 0.93, "x-v1")
    assert passed is False and "2.00 points below the live model x-v1" in reason


def test_the_floor_is_the_recipes_raised_never_lowered_by_min_accuracy() -> None:
    own = get_recipe("digits").min_metric
    assert own > 0
    assert recipe_floor("digits", 0.0)[0] == own
    assert recipe_floor("digits", own + 0.05)[0] == pytest.approx(own + 0.05)
    floor, source = recipe_floor("not-installed", 0.0)
    assert floor > 0 and "not installed" in source
    assert PipelineSettings().min_accuracy > 0


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_learning_rate_is_refused(value: str) -> None:
    with pytest.raises(HyperparameterError, match="lr must be a finite number"):
        parse_hyperparameters(get_recipe("digits"), {"lr": value})
    with pytest.raises(HyperparameterError, match="finite"):
        Hyperparameters(weight_decay=float(value))
