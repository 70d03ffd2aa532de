"""The quantize and promote functions under moto."""

from __future__ import annotations

import io
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser import ValidationError

from lambdaforge.artifact import pack_dir
from lambdaforge.local.context import LocalLambdaContext
from lambdaforge.pipeline.errors import PromotionError
from lambdaforge.registry import Catalog, RegistryError
from tests.functional import moto_stack
from tests.functional.moto_stack import Stack

JOB = "lf-digits-0123456789abcdef"
ARTIFACT_KEY = f"training/{JOB}/output/model.tar.gz"


@pytest.fixture
def stack() -> Iterator[Stack]:
    with moto_stack.running() as stack:
        yield stack


def put_artifact(stack: Stack, body: bytes) -> str:
    stack.client("s3").put_object(Bucket=stack.artifacts_bucket, Key=ARTIFACT_KEY, Body=body)
    return f"s3://{stack.artifacts_bucket}/{ARTIFACT_KEY}"


def quantize(stack: Stack, uri: str, **overrides: Any) -> dict[str, Any]:
    event = {"recipe": "digits", "execution": "digits-0123456789abcdef", "training_job": JOB, "model_artifact": uri,
             "dataset_version": "data/digits/a.csv@abc", **overrides}
    result: dict[str, Any] = stack.handler("quantize").lambda_handler(event, LocalLambdaContext())
    return result


def keys(stack: Stack, prefix: str) -> list[str]:
    out = stack.client("s3").list_objects_v2(Bucket=stack.artifacts_bucket, Prefix=prefix)
    return sorted(o["Key"] for o in out.get("Contents", []))


def test_quantize_writes_a_versioned_candidate_and_a_retry_makes_no_second(stack: Stack, digits_model: Path,
                                                                          tmp_path: Path) -> None:
    uri = put_artifact(stack, pack_dir(digits_model, tmp_path / "m.tar.gz").read_bytes())
    out = quantize(stack, uri)
    assert out["gate_passed"] is True and out["version"] == 1
    assert out["model_uri"] == f"s3://{stack.artifacts_bucket}/models/digits/v000001/"
    written = keys(stack, "models/digits/v000001/")
    assert "models/digits/v000001/manifest.json" in written and "models/digits/v000001/model.onnx" in written
    assert "models/digits/v000001/quantization_report.json" in written
    registry = Catalog(stack.registry_table)
    record = registry.version("digits", 1)
    assert record.training_job == JOB and record.status == "candidate" and record.metrics["accuracy"] > 0.9
    assert registry.state("digits").candidate == 1 and registry.state("digits").live is None
    again = quantize(stack, uri)
    assert again["version"] == 1 and keys(stack, "models/digits/") == written


def test_a_failed_gate_writes_a_report_and_no_version(stack: Stack, digits_model: Path, tmp_path: Path) -> None:
    stack.env.update({"QUANT_MODE": "static", "MIN_ACCURACY": "1.0"})
    uri = put_artifact(stack, pack_dir(digits_model, tmp_path / "m.tar.gz").read_bytes())
    out = quantize(stack, uri)
    assert out["gate_passed"] is False and "below the floor" in out["gate_reason"]
    assert out["report_uri"].endswith(f"reports/digits/{JOB}/quantization_report.json")
    assert keys(stack, "models/") == []
    assert Catalog(stack.registry_table).versions("digits") == []


def _evil_tar(member: str, *, link: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(member)
        if link:
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    return buf.getvalue()


@pytest.mark.parametrize(("body", "message"), [
    (b"this is not a tarball", "not a readable tar archive"),
    (_evil_tar("../../escape.txt"), "climbs out"),
    (_evil_tar("/etc/cron.d/x"), "absolute path"),
    (_evil_tar("model.onnx", link=True), "is a link"),
])
def test_a_corrupt_or_unsafe_tarball_fails_clearly_and_writes_nothing(stack: Stack, body: bytes, message: str) -> None:
    uri = put_artifact(stack, body)
    with pytest.raises(Exception, match=message):
        quantize(stack, uri)
    assert keys(stack, "models/") == [] and keys(stack, "reports/") == []


def test_a_tampered_model_fails_its_checksum(stack: Stack, digits_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(digits_model, bad)
    (bad / "eval.npz").write_bytes(b"tampered")
    uri = put_artifact(stack, pack_dir(bad, tmp_path / "m.tar.gz").read_bytes())
    with pytest.raises(Exception, match=r"eval\.npz: sha256 mismatch"):
        quantize(stack, uri)
    assert keys(stack, "models/") == []


def test_an_oversized_artifact_is_refused_before_download(stack: Stack) -> None:
    stack.env["MAX_ARTIFACT_BYTES"] = "10"
    uri = put_artifact(stack, b"x" * 100)
    with pytest.raises(Exception, match="over the limit of 10"):
        quantize(stack, uri)


def test_a_malformed_quantize_payload_is_refused(stack: Stack) -> None:
    with pytest.raises(ValidationError):
        quantize(stack, "not-an-s3-uri")


# ---------------------------------------------------------------- promote


def promote(stack: Stack, action: str, version: int | None = None) -> dict[str, Any]:
    """As the workflow's run asks it: the run holds the recipe's lock (unless another run took it)."""
    from lambdaforge.registry import Runs

    Runs(stack.registry_table).acquire("digits", "digits-0123456789abcdef",
                                       stack.state_machine_arn.replace(":stateMachine:", ":execution:")
                                       + ":digits-0123456789abcdef")
    event: dict[str, Any] = {"action": action, "recipe": "digits", "execution": "digits-0123456789abcdef"}
    if version is not None:
        event["version"] = version
    result: dict[str, Any] = stack.handler("promote").lambda_handler(event, LocalLambdaContext())
    return result


def alias(stack: Stack) -> tuple[str, dict[str, float]]:
    out = stack.client("lambda").get_alias(FunctionName=stack.inference_function, Name="live")
    return out["FunctionVersion"], (out.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}


def add_versions(stack: Stack, *versions: int) -> None:
    from lambdaforge.registry import VersionRecord

    registry = Catalog(stack.registry_table)
    for v in versions:
        assert registry.allocate_version("digits") == v
        registry.put_version(VersionRecord(recipe="digits", version=v,
                                           model_uri=f"s3://{stack.artifacts_bucket}/models/digits/v{v:06d}/"))


def pinned_model(stack: Stack, lambda_version: str) -> str:
    config = stack.client("lambda").get_function_configuration(FunctionName=stack.inference_function,
                                                                Qualifier=lambda_version)
    return str(config["Environment"]["Variables"]["MODEL_URI"])


def test_first_model_goes_live_then_a_canary_then_all_traffic_then_rollback(stack: Stack) -> None:
    add_versions(stack, 1, 2)
    code_version, _ = alias(stack)
    first = promote(stack, "canary", 1)
    assert first["note"] == "first model"
    v1 = first["lambda_version"]
    assert v1 != code_version and alias(stack) == (v1, {})
    assert pinned_model(stack, v1).endswith("/models/digits/v000001/")
    registry = Catalog(stack.registry_table)
    assert registry.state("digits").live == 1

    canary = promote(stack, "canary", 2)
    v2 = canary["lambda_version"]
    assert alias(stack) == (v1, {v2: 0.1})  # 10% on the new version, 90% still on the live one
    assert registry.state("digits").live == 1  # not live until finalized
    promote(stack, "finalize", 2)
    assert alias(stack) == (v2, {})
    state = registry.state("digits")
    assert (state.live, state.previous) == (2, 1)
    assert pinned_model(stack, v2).endswith("/models/digits/v000002/")
    assert pinned_model(stack, v1).endswith("/models/digits/v000001/")  # versions are immutable

    back = promote(stack, "rollback")
    assert (back["from_version"], back["to_version"]) == (2, 1)
    assert alias(stack) == (v1, {})
    assert registry.state("digits").live == 1
    assert registry.version("digits", 2).status == "rolled-back"


def test_promoting_a_version_that_does_not_exist_fails_and_changes_nothing(stack: Stack) -> None:
    before = alias(stack)
    with pytest.raises(RegistryError, match="has no version 9"):
        promote(stack, "canary", 9)
    assert alias(stack) == before


def test_rollback_without_an_earlier_version_is_refused(stack: Stack) -> None:
    add_versions(stack, 1)
    promote(stack, "canary", 1)
    before = alias(stack)
    with pytest.raises(RegistryError, match="nothing earlier to roll back to"):
        promote(stack, "rollback")
    assert alias(stack) == before


def test_a_firing_alarm_aborts_the_canary(stack: Stack) -> None:
    cloudwatch = stack.client("cloudwatch")
    cloudwatch.put_metric_alarm(AlarmName="lf-errors", MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum",
                                Period=60, EvaluationPeriods=1, Threshold=0, ComparisonOperator="GreaterThanThreshold")
    stack.env["CANARY_ALARMS"] = "lf-errors"
    add_versions(stack, 1, 2)
    v1 = promote(stack, "canary", 1)["lambda_version"]
    promote(stack, "canary", 2)
    cloudwatch.set_alarm_state(AlarmName="lf-errors", StateValue="ALARM", StateReason="errors in the canary")
    with pytest.raises(Exception, match="lf-errors fired during the canary"):
        promote(stack, "finalize", 2)
    assert alias(stack) == (v1, {})
    assert Catalog(stack.registry_table).state("digits").live == 1


def latest_model(stack: Stack) -> str:
    config = stack.client("lambda").get_function_configuration(FunctionName=stack.inference_function)
    return str(config["Environment"]["Variables"].get("MODEL_URI", ""))


def test_latest_never_keeps_a_published_model_so_a_code_deploy_cannot_bring_one_back(stack: Stack) -> None:
    """`sam deploy` of new code publishes $LATEST. Were $LATEST left pinned to the last model published,
    that deploy would put a rolled-back (or aborted) model back on alias live."""
    add_versions(stack, 1, 2)
    assert latest_model(stack) == ""
    promote(stack, "canary", 1)
    assert latest_model(stack) == ""
    promote(stack, "canary", 2)
    assert latest_model(stack) == ""
    promote(stack, "finalize", 2)
    promote(stack, "rollback")
    assert latest_model(stack) == ""
    # what a code deploy does: publish $LATEST. The new version serves the registry's live model.
    deployed = stack.client("lambda").publish_version(FunctionName=stack.inference_function)["Version"]
    assert pinned_model(stack, deployed) == ""


def test_a_promotion_whose_alias_moved_since_it_read_it_changes_nothing(stack: Stack) -> None:
    """Two promoters (a workflow and an operator's rollback, say) cannot both move alias live."""
    from lambdaforge.pipeline.promote import Promoter
    from lambdaforge.pipeline.settings import PipelineSettings

    add_versions(stack, 1, 2, 3)
    promote(stack, "canary", 1)
    slow = Promoter(PipelineSettings.from_env())
    read_before = slow.alias_state()
    promote(stack, "canary", 2)  # the other promoter moves the alias first
    moved = alias(stack)
    slow.alias_state = lambda: read_before  # type: ignore[method-assign]
    with pytest.raises(PromotionError, match="moved since it was read"):
        slow.canary("digits", 3)
    assert alias(stack) == moved


def test_finalize_refuses_when_the_alias_no_longer_carries_its_canary(stack: Stack) -> None:
    add_versions(stack, 1, 2)
    v1 = promote(stack, "canary", 1)["lambda_version"]
    promote(stack, "canary", 2)
    stack.client("lambda").update_alias(FunctionName=stack.inference_function, Name="live", FunctionVersion=v1,
                                        RoutingConfig={"AdditionalVersionWeights": {}})  # an operator's undo
    with pytest.raises(PromotionError, match="no longer carries its canary"):
        promote(stack, "finalize", 2)
    assert alias(stack) == (v1, {}) and Catalog(stack.registry_table).state("digits").live == 1


class _PromoteInProcess:
    """Lambda's Invoke of the promote function, run in process (moto cannot run Lambda without Docker)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def invoke(self, FunctionName: str, Payload: str) -> dict[str, Any]:
        import io
        import json

        answer = self.stack.handler("promote").lambda_handler(json.loads(Payload), LocalLambdaContext())
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}


def _version_made_by(stack: Stack, execution: str) -> None:
    """Version 2, as the quantize step of `execution` records it."""
    from lambdaforge.registry import VersionRecord

    catalog = Catalog(stack.registry_table)
    assert catalog.allocate_version("digits") == 2
    catalog.put_version(VersionRecord(recipe="digits", version=2, execution=execution,
                                      model_uri=f"s3://{stack.artifacts_bucket}/models/digits/v000002/"))


def test_a_run_that_dies_during_its_canary_is_cleaned_up(stack: Stack) -> None:
    """Aborted (or timed out) mid-canary: no Catch runs, so the status-change event must undo it all."""
    import json

    from lambdaforge.pipeline.payloads import RunEnded
    from lambdaforge.pipeline.settings import PipelineSettings
    from lambdaforge.pipeline.trigger import RunRecovery, Trigger
    from lambdaforge.registry import Runs

    add_versions(stack, 1)
    _version_made_by(stack, "digits-dead")
    v1 = promote(stack, "canary", 1)["lambda_version"]
    runs = Runs(stack.registry_table)
    arn = stack.state_machine_arn.replace(":stateMachine:", ":execution:") + ":digits-dead"
    runs.release("digits", "digits-0123456789abcdef")
    assert runs.acquire("digits", "digits-dead", arn)
    runs.record("digits", "digits-dead", "RUNNING")
    stack.handler("promote").lambda_handler({"action": "canary", "recipe": "digits", "version": 2,
                                             "execution": "digits-dead"}, LocalLambdaContext())  # its own canary
    assert alias(stack)[1]  # 10% on v2 when the run died
    stack.notifications()
    trigger = Trigger(PipelineSettings.from_env(promote_function="lf-promote"))
    ended = RunEnded(executionArn=arn, stateMachineArn=stack.state_machine_arn, name="digits-dead",
                     status="ABORTED", input=json.dumps({"recipe": "digits",
                                                         "training": {"job_name": "lf-digits-gone"}}))
    outcome = RunRecovery(trigger, lam=_PromoteInProcess(stack)).recover(ended)
    assert outcome.status == "recovered" and "recorded and announced" in outcome.detail, outcome
    assert alias(stack) == (v1, {})  # all traffic back on live
    assert Catalog(stack.registry_table).state("digits").live == 1
    assert runs.state("digits").running is None
    logged = {r["sk"]: r for r in runs.log("digits")}["run#digits-dead"]
    assert logged["status"] == "FAILED" and "ABORTED" in logged["cause"]
    assert any("ABORTED" in m for m in stack.notifications())
    # the same event again (EventBridge delivers at least once) changes nothing more
    again = RunRecovery(trigger, lam=_PromoteInProcess(stack)).recover(ended)
    assert "its failure path had recorded it" in again.detail
    assert alias(stack) == (v1, {}) and len([m for m in stack.notifications() if "ABORTED" in m]) == 0


def test_restore_takes_off_only_the_dead_runs_canary(stack: Stack) -> None:
    add_versions(stack, 1)
    _version_made_by(stack, "digits-other")
    promote(stack, "canary", 1)
    promote(stack, "canary", 2)  # another run's canary
    before = alias(stack)
    out = stack.handler("promote").lambda_handler({"action": "restore", "recipe": "digits",
                                                   "execution": "digits-dead"}, LocalLambdaContext())
    assert out["restored"] is False and alias(stack) == before


def test_a_publish_that_died_half_way_does_not_leave_latest_pinned_for_good(stack: Stack) -> None:
    add_versions(stack, 1)
    lam = stack.client("lambda")
    env = lam.get_function_configuration(FunctionName=stack.inference_function)["Environment"]["Variables"]
    # what a promote function killed between pinning and unpinning leaves behind
    lam.update_function_configuration(FunctionName=stack.inference_function, Environment={"Variables": {
        **env, "MODEL_URI": "s3://lf-artifacts/models/digits/v000009/", "MODEL_VERSION": "digits-v9"}})
    promote(stack, "canary", 1)
    assert latest_model(stack) == ""
    assert "MODEL_VERSION" not in lam.get_function_configuration(
        FunctionName=stack.inference_function)["Environment"]["Variables"]


def test_when_the_registry_refuses_a_finalize_the_alias_is_put_back(stack: Stack) -> None:
    """Alias moved, then the registry's conditional write failed (live moved since it was read): the
    alias goes back to where it was, so that alias and registry never disagree."""
    from lambdaforge.pipeline.promote import Promoter
    from lambdaforge.pipeline.settings import PipelineSettings
    from lambdaforge.registry import ConcurrentUpdateError

    add_versions(stack, 1, 2, 3)
    promote(stack, "canary", 1)
    promote(stack, "canary", 2)
    before = alias(stack)
    catalog = Catalog(stack.registry_table)
    stale = catalog.state("digits")
    catalog.mark_live("digits", 3)  # another writer moved live in the registry
    slow = Promoter(PipelineSettings.from_env())
    slow.catalog.state = lambda recipe: stale  # type: ignore[method-assign]
    with pytest.raises(ConcurrentUpdateError):
        slow.finalize("digits", 2)
    assert alias(stack) == before


def test_a_run_that_lost_its_lock_promotes_nothing_and_leaves_the_holders_canary(stack: Stack) -> None:
    """Its lock was judged dead and another run took it: two rollouts must never share alias live."""
    from lambdaforge.registry import Runs

    add_versions(stack, 1)
    _version_made_by(stack, "digits-holder")
    v1 = promote(stack, "canary", 1)["lambda_version"]
    runs = Runs(stack.registry_table)
    runs.release("digits", "digits-0123456789abcdef")
    assert runs.acquire("digits", "digits-holder", "arn:aws:states:us-east-1:123456789012:execution:m:digits-holder")
    holder = stack.handler("promote").lambda_handler(
        {"action": "canary", "recipe": "digits", "version": 2, "execution": "digits-holder"}, LocalLambdaContext())
    before = alias(stack)
    assert before[0] == v1 and before[1] == {holder["lambda_version"]: pytest.approx(0.1)}
    with pytest.raises(PromotionError, match="no longer holds the digits run lock"):
        promote(stack, "finalize", 2)  # the same version, asked by the run that lost the lock
    with pytest.raises(PromotionError, match="digits-holder does"):
        promote(stack, "canary", 2)
    assert alias(stack) == before
    aborted = promote(stack, "abort", 2)  # its failure path: only its own canary weight, none here
    assert aborted["restored"] is False and alias(stack) == before


def test_a_run_whose_lock_was_released_promotes_nothing(stack: Stack) -> None:
    """Its lock judged dead and released, a newer run may have trained and gone live since: this run's
    older model must not replace it."""
    from lambdaforge.registry import Runs

    add_versions(stack, 1, 2)
    promote(stack, "canary", 1)
    Runs(stack.registry_table).release("digits", "digits-0123456789abcdef")
    before = alias(stack)
    with pytest.raises(PromotionError, match="nobody does"):
        stack.handler("promote").lambda_handler({"action": "canary", "recipe": "digits", "version": 2,
                                                 "execution": "digits-0123456789abcdef"}, LocalLambdaContext())
    assert alias(stack) == before
