"""The retraining workflow: a valid definition, a Catch on every task, substitutions that match the
template, and Lambda payloads that are exactly what each handler parses."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from lambdaforge.pipeline.payloads import PromoteRequest, QuantizeRequest, ReleaseRequest
from lambdaforge.training import METRIC_DEFINITIONS

HANDLER_MODELS = {"${QuantizeFunctionArn}": QuantizeRequest, "${PromoteFunctionArn}": PromoteRequest,
                  "${TriggerFunctionArn}": ReleaseRequest}


def substitute(asl: dict[str, Any]) -> str:
    text = json.dumps(asl)
    values = {"InstanceCount": "1", "VolumeSizeGB": "30", "MaxRuntimeSeconds": "3600", "MaxWaitSeconds": "7200",
              "PollSeconds": "60", "CanarySeconds": "300", "MetricsSettleSeconds": "180", "UseSpot": "true",
              "PollMarginSeconds": "3600"}
    return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), f"arn-or-name-{m.group(1)}"), text)


def test_the_definition_parses_as_amazon_states_language(asl: dict[str, Any]) -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    AmazonStateLanguageParser.parse(substitute(asl))


def test_every_transition_target_exists_and_every_state_is_reachable(asl: dict[str, Any]) -> None:
    states = asl["States"]
    edges: dict[str, set[str]] = {}
    for name, state in states.items():
        targets = {state[k] for k in ("Next", "Default") if k in state}
        targets |= {c["Next"] for c in state.get("Choices", [])}
        targets |= {c["Next"] for c in state.get("Catch", [])}
        assert targets <= set(states), f"{name} -> {targets - set(states)}"
        edges[name] = targets
    seen, todo = set(), [asl["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges[name])
    assert seen == set(states), f"unreachable: {set(states) - seen}"
    assert {"Done", "Failed"} <= seen


def test_every_task_has_a_catch_all_and_no_sync_integration(asl: dict[str, Any]) -> None:
    tasks = {n: s for n, s in asl["States"].items() if s["Type"] == "Task"}
    assert len(tasks) >= 9
    for name, state in tasks.items():
        assert ".sync" not in state["Resource"], name  # moto cannot run .sync; the workflow polls instead
        assert any("States.ALL" in c["ErrorEquals"] for c in state.get("Catch", [])), name


def test_failure_path_records_notifies_releases_and_fails(asl: dict[str, Any]) -> None:
    states = asl["States"]
    assert states["RecordFailure"]["Resource"] == "arn:aws:states:::dynamodb:updateItem"
    assert states["RecordFailure"]["Next"] == "RecordLastFailure"
    assert states["RecordLastFailure"]["Next"] == "NotifyFailure"
    assert states["NotifyFailure"]["Resource"] == "arn:aws:states:::sns:publish"
    # the run's job is stopped before the lock is released (a no-op when it ended or never existed),
    # also when the notification failed
    assert states["NotifyFailure"]["Next"] == "StopTrainingJob"
    assert [c["Next"] for c in states["NotifyFailure"]["Catch"]] == ["StopTrainingJob"]
    assert states["StopTrainingJob"]["Resource"] == "arn:aws:states:::aws-sdk:sagemaker:stopTrainingJob"
    assert states["StopTrainingJob"]["Next"] == "ReleaseAfterFailure"
    assert [c["Next"] for c in states["StopTrainingJob"]["Catch"]] == ["ReleaseAfterFailure"]
    assert states["ReleaseAfterFailure"]["Next"] == "Failed" and states["Failed"]["Type"] == "Fail"
    # a failed rollout is undone before the failure is recorded
    assert states["PromoteFinalize"]["Catch"][0]["Next"] == "AbortCanary"
    assert states["PromoteCanary"]["Catch"][0]["Next"] == "AbortCanary"


def test_training_job_uses_spot_checkpoints_and_the_harness_metric_definitions(asl: dict[str, Any]) -> None:
    states = asl["States"]
    create = states["CreateTrainingJob"]["Parameters"]
    assert create["AlgorithmSpecification"]["MetricDefinitions.$"] == "$.training.metric_definitions"
    assert create["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert create["EnableManagedSpotTraining.$"] == "$.capacity.spot"
    assert states["PrepareSpot"]["Parameters"]["stopping"]["MaxWaitTimeInSeconds.$"]
    assert "MaxWaitTimeInSeconds.$" not in states["PrepareOnDemand"]["Parameters"]["stopping"]
    from lambdaforge.pipeline.training_job import metric_definitions

    assert metric_definitions() == METRIC_DEFINITIONS


def test_substitutions_match_the_template(asl: dict[str, Any], translated: Any) -> None:
    used = set(re.findall(r"\$\{(\w+)\}", json.dumps(asl)))
    given = set(translated.source["Resources"]["RetrainStateMachine"]["Properties"]["DefinitionSubstitutions"])
    assert used == given


def test_finalize_waits_for_the_canary_window_then_for_its_metrics_to_settle(asl: dict[str, Any],
                                                                             translated: Any) -> None:
    """EMF metrics from the Lambda logs, and the alarms' evaluation of them, reach CloudWatch 1-3 minutes
    late: a finalize at the end of the window would not see its last minutes' errors."""
    states = asl["States"]
    assert states["PromoteCanary"]["Next"] == "WaitCanary"
    assert states["WaitCanary"] == {"Type": "Wait", "SecondsPath": "$.config.canary_seconds",
                                    "Next": "WaitMetricsSettle"}
    settle = states["WaitMetricsSettle"]
    assert (settle["Type"], settle["SecondsPath"], settle["Next"]) == (
        "Wait", "$.config.metrics_settle_seconds", "PromoteFinalize")
    prepare = states["Prepare"]["Parameters"]
    assert prepare["canary_seconds.$"] == "States.StringToJson('${CanarySeconds}')"
    assert prepare["metrics_settle_seconds.$"] == "States.StringToJson('${MetricsSettleSeconds}')"
    source = translated.source
    parameter = source["Parameters"]["MetricsSettleSeconds"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 180, 0)
    substitutions = source["Resources"]["RetrainStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert substitutions["MetricsSettleSeconds"] == {"Ref": "MetricsSettleSeconds"}
    assert substitutions["CanarySeconds"] == {"Ref": "CanarySeconds"}
    # the promote function knows the same lengths: a finalize asked sooner refuses to decide
    env = source["Resources"]["PromoteFunction"]["Properties"]["Environment"]["Variables"]
    assert env["CANARY_SECONDS"] == {"Ref": "CanarySeconds"}
    assert env["METRICS_SETTLE_SECONDS"] == {"Ref": "MetricsSettleSeconds"}


@pytest.mark.parametrize("function", sorted(HANDLER_MODELS))
def test_each_lambda_task_payload_is_exactly_what_its_handler_parses(asl: dict[str, Any], function: str) -> None:
    model = HANDLER_MODELS[function]
    tasks = [(n, s) for n, s in asl["States"].items()
             if s.get("Resource") == "arn:aws:states:::lambda:invoke" and s["Parameters"]["FunctionName"] == function]
    assert tasks, function
    fields = set(model.model_fields)
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    for name, state in tasks:
        keys = {k.removesuffix(".$") for k in state["Parameters"]["Payload"]}
        assert required <= keys <= fields, f"{name}: sends {sorted(keys)}, {model.__name__} takes {sorted(fields)}"
        literal = {k: v for k, v in state["Parameters"]["Payload"].items() if not k.endswith(".$")}
        sample = {k: "x1" for k in keys}
        sample.update(literal)
        for key in keys:
            if key == "version":
                sample[key] = 1
            if key == "execution":
                sample[key] = "digits-0123456789abcdef"
            if key == "recipe":
                sample[key] = "digits"
            if key == "model_artifact":
                sample[key] = "s3://bucket/training/job/output/model.tar.gz"
        model.model_validate(sample)  # the literal values (action, status) are ones the handler accepts


def sdk_result_fields_read(asl: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(state, service, operation, top-level field) for each field a ResultSelector takes from an aws-sdk task."""
    out = []
    for name, state in asl["States"].items():
        match = re.fullmatch(r"arn:aws:states:::aws-sdk:(\w+):(\w+)", str(state.get("Resource", "")))
        if not match:
            continue
        for key, path in (state.get("ResultSelector") or {}).items():
            if key.endswith(".$") and str(path).startswith("$.") and not str(path).startswith("$$"):
                field = re.split(r"[.\[]", path[2:])[0]
                out.append((name, match.group(1), match.group(2)[0].upper() + match.group(2)[1:], field))
    return out


def optional_fields_read(asl: dict[str, Any]) -> list[str]:
    import botocore.session

    session = botocore.session.get_session()
    wrong = []
    for state, service, operation, field in sdk_result_fields_read(asl):
        output = session.get_service_model(service).operation_model(operation).output_shape
        if field not in output.required_members:
            wrong.append(f"{state}: {service}:{operation} may answer without {field}")
    return wrong


def test_result_selectors_read_only_fields_the_api_always_returns(asl: dict[str, Any]) -> None:
    """A ResultSelector path to an absent field raises States.Runtime in AWS, which no Catch handles:
    the execution fails outright and nothing records the failure or releases the lock. (A Stopped
    SageMaker job has no FailureReason.) moto's interpreter is more forgiving, so this is pinned here."""
    assert sdk_result_fields_read(asl), "the workflow reads no aws-sdk result: the check would check nothing"
    assert optional_fields_read(asl) == []


def test_the_optional_field_check_catches_a_selector_on_failure_reason(asl: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(asl))
    broken["States"]["DescribeFailure"]["ResultSelector"] = {"reason.$": "$.FailureReason"}
    assert optional_fields_read(broken) == [
        "DescribeFailure: sagemaker:DescribeTrainingJob may answer without FailureReason"]
