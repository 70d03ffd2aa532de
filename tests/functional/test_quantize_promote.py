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
from lambdaforge.pipeline.errors import EphemeralStorageError, PromotionError
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


def test_an_artifact_that_would_fill_tmp_is_refused_before_extracting(stack: Stack,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    stack.env["EPHEMERAL_STORAGE_MB"] = "1"  # the template says 4096; a 1 MB /tmp makes the case small
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:  # 2 MB of zeros: a few KB on the wire
        info = tarfile.TarInfo("model.onnx")
        info.size = 2 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    uri = put_artifact(stack, buf.getvalue())
    extracted: list[Path] = []
    monkeypatch.setattr("lambdaforge.pipeline.quantize_step.safe_extract", lambda *a, **k: extracted.append(a[1]))
    from lambdaforge.pipeline.quantize_step import TMP_BYTES_PER_UNPACKED_BYTE

    need = (2 << 20) * TMP_BYTES_PER_UNPACKED_BYTE
    with pytest.raises(EphemeralStorageError, match=rf"unpacks to 2097152 bytes; .* needs about {need} bytes of "
                                                    r"/tmp and has \d+ \(the function's EphemeralStorage"):
        quantize(stack, uri)
    assert extracted == [] and keys(stack, "models/") == []


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


LABELS = tuple(str(i) for i in range(10))
FIRST_ROW = [float(i % 17) for i in range(64)]  # the first held-out row of every test model


def put_model(stack: Stack, version: int) -> str:
    """A model directory's manifest and eval samples (what the smoke check reads) at the version's URI."""
    import hashlib

    import numpy as np

    from lambdaforge.artifact.manifest import Manifest, Preprocessing, TensorSpec, TrainingInfo

    buf = io.BytesIO()
    pixels = np.array([FIRST_ROW, [1.5] * 64], dtype=np.float32).reshape(2, 1, 8, 8)
    np.savez_compressed(buf, labels=np.array([3, 1]), image=pixels)
    files = {"eval.npz": buf.getvalue(), "model.onnx": b"not read by the smoke check"}
    manifest = Manifest(recipe="digits", inputs=(TensorSpec(name="image", dtype="float32", shape=("batch", 1, 8, 8)),),
                        outputs=(TensorSpec(name="logits", dtype="float32", shape=("batch", 10)),), labels=LABELS,
                        preprocessing=Preprocessing(kind="tensor"),
                        training=TrainingInfo(recipe="digits", job_name=JOB, dataset_version="data/digits/a.csv@abc"),
                        files={k: hashlib.sha256(v).hexdigest() for k, v in files.items()})
    prefix = f"models/digits/v{version:06d}/"
    s3 = stack.client("s3")
    for rel, body in {**files, "manifest.json": manifest.model_dump_json().encode()}.items():
        s3.put_object(Bucket=stack.artifacts_bucket, Key=prefix + rel, Body=body)
    return f"s3://{stack.artifacts_bucket}/{prefix}"


class FakeInference:
    """The inference function's published versions, in process (moto cannot run Lambda without Docker):
    each answers as a healthy model pinned by its MODEL_URI/MODEL_VERSION does, unless `answer` says otherwise."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, dict[str, Any]]] = []
        self.answer: Any = None  # (env, event) -> the payload to return, or None for the healthy answer
        self.function_error = False

    def invoke(self, backend: Any, function_name: str, qualifier: str | None, body: Any, headers: Any,
               response_headers: Any) -> bytes:
        import json

        name = function_name.split(":")[6] if function_name.startswith("arn:") else function_name
        if function_name.startswith("arn:") and len(function_name.split(":")) > 7:
            qualifier = function_name.split(":")[7]
        event = json.loads(body)
        self.calls.append((name, qualifier, event))
        env = backend.get_function(name, qualifier).environment_vars or {}
        response_headers["x-amz-executed-version"] = qualifier or "$LATEST"
        if self.function_error:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": "Runtime.ExitError", "errorMessage": "exited"}).encode()
        answer = self.answer(env, event) if self.answer else None
        if answer is None:
            count = len(json.loads(event["body"])["instances"])
            answer = {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps({
                "model": {"recipe": "digits", "version": env.get("MODEL_VERSION", "")},
                "predictions": [{"label": "3", "index": 3, "score": 0.9, "top_k": []}] * count, "latency_ms": 1.0})}
        return (answer if isinstance(answer, bytes) else json.dumps(answer).encode())


@pytest.fixture(autouse=True)
def inference(monkeypatch: pytest.MonkeyPatch) -> FakeInference:
    from moto.awslambda.models import LambdaBackend

    fake = FakeInference()
    # a plain function, as moto calls it with the backend first
    monkeypatch.setattr(LambdaBackend, "invoke", lambda backend, *args: fake.invoke(backend, *args))  # noqa: PLW0108
    return fake


def add_versions(stack: Stack, *versions: int) -> None:
    from lambdaforge.registry import VersionRecord

    registry = Catalog(stack.registry_table)
    for v in versions:
        assert registry.allocate_version("digits") == v
        registry.put_version(VersionRecord(recipe="digits", version=v, model_uri=put_model(stack, v)))


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


def errors_alarm(stack: Stack) -> Any:
    """A static alarm on the alias's Lambda errors, watched by the canary (as the template's is)."""
    cloudwatch = stack.client("cloudwatch")
    cloudwatch.put_metric_alarm(AlarmName="lf-errors", MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum",
                                Period=60, EvaluationPeriods=1, Threshold=0, ComparisonOperator="GreaterThanThreshold")
    stack.env["CANARY_ALARMS"] = "lf-errors"
    return cloudwatch


def test_a_firing_alarm_aborts_the_canary(stack: Stack) -> None:
    cloudwatch = errors_alarm(stack)
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
    catalog.put_version(VersionRecord(recipe="digits", version=2, execution=execution, model_uri=put_model(stack, 2)))


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


# --- what decides a rollout: the smoke check before traffic moves, then the whole canary window
def version_metrics(stack: Stack, lambda_version: str) -> Any:
    from lambdaforge.pipeline.canary_watch import VersionMetrics

    config = stack.client("lambda").get_function_configuration(FunctionName=stack.inference_function,
                                                                Qualifier=lambda_version)
    return VersionMetrics.of(config, lambda_version)


def put_answers(stack: Stack, lambda_version: str, at: Any = None, **counts: float) -> None:
    """What the version's EMF lines become in CloudWatch: its answer counts, now (or `at`)."""
    metrics = version_metrics(stack, lambda_version)
    when = {"Timestamp": at} if at is not None else {}
    stack.client("cloudwatch").put_metric_data(Namespace=metrics.namespace, MetricData=[
        {"MetricName": name, "Dimensions": metrics.cloudwatch_dimensions(), "Value": value, "Unit": "Count", **when}
        for name, value in counts.items()])


def alarm_names(stack: Stack) -> set[str]:
    return {a["AlarmName"] for a in stack.client("cloudwatch").describe_alarms()["MetricAlarms"]}


def test_the_canary_starts_after_the_new_version_answers_its_own_sample(stack: Stack, inference: FakeInference) -> None:
    import json

    add_versions(stack, 1, 2)
    v1 = promote(stack, "canary", 1)["lambda_version"]
    inference.calls.clear()
    canary = promote(stack, "canary", 2)
    v2 = canary["lambda_version"]
    assert canary["smoke"]["status"] == 200 and canary["smoke"]["label"] == "3"
    [(name, qualifier, event)] = inference.calls
    assert (name, qualifier) == (stack.inference_function, v2)  # the new version itself, before any traffic
    assert event["version"] == "2.0" and event["requestContext"]["http"] == {
        **event["requestContext"]["http"], "method": "POST", "path": "/predict"}
    assert json.loads(event["body"]) == {"instances": [FIRST_ROW]}  # the model's own first held-out row
    assert alias(stack) == (v1, {v2: 0.1})
    assert set(canary["alarms"]) <= alarm_names(stack)
    assert Catalog(stack.registry_table).version("digits", 2).canary_started_at == canary["canary_started_at"]
    put_answers(stack, v2, Answers=10, ClientErrors=2, ServerErrors=0)  # bad client input: 20%, below the rate
    promote(stack, "finalize", 2)
    assert alias(stack) == (v2, {})
    assert not set(canary["alarms"]) & alarm_names(stack)  # decided: the version's alarms are gone


def _status(code: int) -> Any:
    return lambda env, event: {"statusCode": code, "body": '{"error": "model_unavailable", "message": "x"}'}


def _body(body: Any) -> Any:
    import json

    return lambda env, event: {"statusCode": 200, "body": body if isinstance(body, str) else json.dumps(body)}


def _healthy(label: str = "3", count: int = 1, version: str | None = None) -> Any:
    return lambda env, event: _body({"model": {"recipe": "digits", "version": version or env["MODEL_VERSION"]},
                                     "predictions": [{"label": label}] * count})(env, event)


@pytest.mark.parametrize(("answer", "message"), [
    (_status(503), "answered 503"),
    (_status(422), "answered 422"),
    (_body("<html>ok</html>"), "not JSON"),
    (_healthy(count=2), "1 instance\\(s\\) sent, the answer holds 2"),
    (_healthy(label="cat"), "'cat' is not one of the model's labels"),
    (_healthy(version="digits-v1"), "comes from model 'digits-v1', not 'digits-v2'"),
    (lambda env, event: b"not even json", "returned no JSON"),
    ("function-error", "failed \\(Unhandled\\)"),
])
def test_a_wrong_answer_to_the_smoke_check_moves_no_traffic(stack: Stack, inference: FakeInference, answer: Any,
                                                            message: str) -> None:
    from lambdaforge.pipeline.errors import SmokeCheckFailedError

    add_versions(stack, 1, 2)
    promote(stack, "canary", 1)
    before = alias(stack)
    if answer == "function-error":
        inference.function_error = True
    else:
        inference.answer = answer
    with pytest.raises(SmokeCheckFailedError, match=message):
        promote(stack, "canary", 2)
    assert alias(stack) == before  # no weight, ever
    catalog = Catalog(stack.registry_table)
    assert catalog.state("digits").live == 1
    assert catalog.version("digits", 2).canary_started_at is None
    assert not any("-canary-" in n for n in alarm_names(stack))
    assert promote(stack, "abort", 2)["lambda_version"] == before[0]  # the workflow's Catch: nothing to undo
    assert alias(stack) == before


def test_a_first_model_that_answers_wrongly_never_goes_live(stack: Stack, inference: FakeInference) -> None:
    from lambdaforge.pipeline.errors import SmokeCheckFailedError

    add_versions(stack, 1)
    before = alias(stack)
    inference.answer = _status(503)
    with pytest.raises(SmokeCheckFailedError, match="no traffic moved"):
        promote(stack, "canary", 1)
    assert alias(stack) == before and Catalog(stack.registry_table).state("digits").live is None


def test_a_smoke_sample_whose_checksum_does_not_match_refuses_the_rollout(stack: Stack) -> None:
    from lambdaforge.pipeline.errors import SmokeCheckFailedError

    add_versions(stack, 1, 2)
    promote(stack, "canary", 1)
    before = alias(stack)
    stack.client("s3").put_object(Bucket=stack.artifacts_bucket, Key="models/digits/v000002/eval.npz", Body=b"x")
    with pytest.raises(SmokeCheckFailedError, match="does not match the sha256"):
        promote(stack, "canary", 2)
    assert alias(stack) == before


def test_an_alarm_that_fired_and_cleared_during_the_canary_aborts_finalize(stack: Stack) -> None:
    cloudwatch = errors_alarm(stack)
    add_versions(stack, 1, 2)
    v1 = promote(stack, "canary", 1)["lambda_version"]
    v2 = promote(stack, "canary", 2)["lambda_version"]
    cloudwatch.set_alarm_state(AlarmName="lf-errors", StateValue="ALARM", StateReason="errors in the canary")
    cloudwatch.set_alarm_state(AlarmName="lf-errors", StateValue="OK", StateReason="they stopped")
    assert cloudwatch.describe_alarms(AlarmNames=["lf-errors"])["MetricAlarms"][0]["StateValue"] == "OK"
    with pytest.raises(Exception, match="lf-errors fired during the canary") as failed:
        promote(stack, "finalize", 2)
    assert type(failed.value).__name__ == "CanaryFailedError"
    assert alias(stack) == (v1, {})
    assert Catalog(stack.registry_table).state("digits").live == 1
    assert not any(f"-canary-v{v2}-" in n for n in alarm_names(stack))


def test_an_alarm_that_fired_before_the_canary_began_is_not_held_against_it(stack: Stack) -> None:
    cloudwatch = errors_alarm(stack)
    add_versions(stack, 1, 2)
    promote(stack, "canary", 1)
    cloudwatch.set_alarm_state(AlarmName="lf-errors", StateValue="ALARM", StateReason="an old incident")
    cloudwatch.set_alarm_state(AlarmName="lf-errors", StateValue="OK", StateReason="over")
    import time

    time.sleep(1.1)  # the canary's start is recorded to the second
    v2 = promote(stack, "canary", 2)["lambda_version"]
    promote(stack, "finalize", 2)
    assert alias(stack) == (v2, {})


def test_server_errors_of_the_new_version_during_the_canary_abort_finalize(stack: Stack) -> None:
    add_versions(stack, 1, 2)
    v1 = promote(stack, "canary", 1)["lambda_version"]
    v2 = promote(stack, "canary", 2)["lambda_version"]
    put_answers(stack, v1, Answers=50, ServerErrors=3)  # the live version's errors are not the canary's
    put_answers(stack, v2, Answers=20, ClientErrors=0, ServerErrors=1, Unavailable=1)
    with pytest.raises(Exception, match=f"version {v2} answered 1 5xx during the canary") as failed:
        promote(stack, "finalize", 2)
    assert f"-canary-v{v2}-server-errors fired during the canary" in str(failed.value)
    assert alias(stack) == (v1, {}) and Catalog(stack.registry_table).state("digits").live == 1


def test_a_version_that_refuses_most_of_its_input_aborts_finalize(stack: Stack) -> None:
    """A model that answers 422 to everything makes no Lambda error and no 5xx: its 4xx share decides."""
    add_versions(stack, 1, 2)
    v1 = promote(stack, "canary", 1)["lambda_version"]
    v2 = promote(stack, "canary", 2)["lambda_version"]
    put_answers(stack, v2, Answers=10, ClientErrors=9, ServerErrors=0)
    with pytest.raises(Exception, match=f"-canary-v{v2}-client-errors fired during the canary"):
        promote(stack, "finalize", 2)
    assert alias(stack) == (v1, {})


def test_a_retried_canary_step_keeps_its_start_and_its_alarms(stack: Stack) -> None:
    add_versions(stack, 1, 2)
    v1 = promote(stack, "canary", 1)["lambda_version"]
    first = promote(stack, "canary", 2)
    v2 = first["lambda_version"]
    put_answers(stack, v2, Answers=5, ServerErrors=1)  # before the step is retried
    import time

    time.sleep(1.1)
    again = promote(stack, "canary", 2)  # the same run (execution) retries its canary step
    assert again["canary_started_at"] == first["canary_started_at"]
    assert again["alarms"] == first["alarms"] and set(first["alarms"]) <= alarm_names(stack)
    server = f"{stack.inference_function}-canary-v{v2}-server-errors"
    state = stack.client("cloudwatch").describe_alarms(AlarmNames=[server])["MetricAlarms"][0]["StateValue"]
    assert state == "ALARM"  # the retry wiped nothing its canary had shown
    with pytest.raises(Exception, match=f"version {v2} answered 1 5xx during the canary"):
        promote(stack, "finalize", 2)
    assert alias(stack) == (v1, {})


def _as_run(stack: Stack, execution: str, action: str, version: int) -> dict[str, Any]:
    """`action` asked by run `execution`, which holds the recipe's lock (the previous holder's run ended)."""
    from lambdaforge.registry import Runs

    runs = Runs(stack.registry_table)
    holder = runs.state("digits").running
    if holder != execution:
        if holder:
            runs.release("digits", holder)
        arn = stack.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{execution}"
        assert runs.acquire("digits", execution, arn)
    out: dict[str, Any] = stack.handler("promote").lambda_handler(
        {"action": action, "recipe": "digits", "version": version, "execution": execution}, LocalLambdaContext())
    return out


def test_a_new_run_of_the_same_model_gets_its_own_canary_window_and_fresh_alarms(stack: Stack) -> None:
    """PublishVersion answers an unchanged configuration with the version it published before, and the
    canary alarms are named after the version: a second run of the same model gets the same Lambda
    version and alarm names. It must not inherit the first attempt's window, errors or alarm state."""
    import time
    from datetime import UTC, datetime, timedelta

    add_versions(stack, 1, 2)
    v1 = promote(stack, "canary", 1)["lambda_version"]
    first = _as_run(stack, "digits-first", "canary", 2)
    v2 = first["lambda_version"]
    server = f"{stack.inference_function}-canary-v{v2}-server-errors"
    # the first attempt (a quarter of an hour ago) broke: its 5xx are in the metric, its alarm fired
    _canary_began(stack, 2, 15 * 60)
    put_answers(stack, v2, at=datetime.now(UTC) - timedelta(minutes=10), Answers=5, ServerErrors=1)
    stack.client("cloudwatch").set_alarm_state(AlarmName=server, StateValue="ALARM", StateReason="5xx")
    # and that run died without its abort (no Catch ran): the alarms stay, in ALARM; traffic goes back
    stack.client("lambda").update_alias(FunctionName=stack.inference_function, Name="live", FunctionVersion=v1,
                                        RoutingConfig={"AdditionalVersionWeights": {}})
    time.sleep(1.1)  # the canary's start is recorded to the second

    second = _as_run(stack, "digits-second", "canary", 2)
    assert second["lambda_version"] == v2 and second["alarms"] == first["alarms"]  # the same version and names
    assert second["canary_started_at"] > first["canary_started_at"]  # a window of its own, begun now
    record = Catalog(stack.registry_table).version("digits", 2)
    assert (record.canary_started_at, record.canary_execution) == (second["canary_started_at"], "digits-second")
    alarms = stack.client("cloudwatch").describe_alarms(AlarmNames=[server])["MetricAlarms"]
    assert alarms[0]["StateValue"] != "ALARM"  # made afresh (PutMetricAlarm alone keeps an alarm's state)
    assert alias(stack) == (v1, {v2: 0.1})
    put_answers(stack, v2, Answers=20, ServerErrors=0)  # healthy this time
    done = _as_run(stack, "digits-second", "finalize", 2)
    assert done["live"] == 2 and alias(stack) == (v2, {})


def test_a_retried_model_that_breaks_again_is_refused_again(stack: Stack) -> None:
    """The new window is a window: the second attempt's own errors still abort it."""
    import time

    add_versions(stack, 1, 2)
    v1 = promote(stack, "canary", 1)["lambda_version"]
    v2 = _as_run(stack, "digits-first", "canary", 2)["lambda_version"]
    put_answers(stack, v2, Answers=5, ServerErrors=1)
    with pytest.raises(Exception, match="fired during the canary"):
        _as_run(stack, "digits-first", "finalize", 2)
    time.sleep(1.1)
    _as_run(stack, "digits-second", "canary", 2)
    put_answers(stack, v2, Answers=5, ServerErrors=2)
    with pytest.raises(Exception, match=f"version {v2} answered 2 5xx during the canary"):
        _as_run(stack, "digits-second", "finalize", 2)
    assert alias(stack) == (v1, {}) and Catalog(stack.registry_table).state("digits").live == 1


def _canary_began(stack: Stack, version: int, seconds_ago: float) -> None:
    from datetime import UTC, datetime, timedelta

    from lambdaforge.registry import keys

    at = (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat(timespec="seconds")
    Catalog(stack.registry_table).table.update_item(
        Key=keys.version_key("digits", version), UpdateExpression=f"SET {keys.CANARY_STARTED_AT} = :t",
        ExpressionAttributeValues={":t": at})


@pytest.mark.parametrize(("began", "decided"), [(170, False), (190, True)])
def test_finalize_decides_only_once_the_windows_metrics_have_settled(stack: Stack, began: float,
                                                                    decided: bool) -> None:
    """In AWS the window's last minutes reach CloudWatch 1-3 minutes late (EMF extraction, alarm
    evaluation): finalize asked before the canary's length plus the settle time refuses to decide."""
    from lambdaforge.pipeline.errors import CanaryNotSettledError

    stack.env.update({"CANARY_SECONDS": "60", "METRICS_SETTLE_SECONDS": "120"})
    add_versions(stack, 1, 2)
    v1 = promote(stack, "canary", 1)["lambda_version"]
    v2 = promote(stack, "canary", 2)["lambda_version"]
    _canary_began(stack, 2, began)
    if decided:
        promote(stack, "finalize", 2)
        assert alias(stack) == (v2, {})
        return
    with pytest.raises(CanaryNotSettledError, match="too early to decide"):
        promote(stack, "finalize", 2)
    assert alias(stack) == (v1, {})  # undecided is not passed: all traffic back on live
    assert Catalog(stack.registry_table).state("digits").live == 1


def test_the_canary_reads_the_metrics_the_runtime_publishes() -> None:
    from lambdaforge.pipeline import canary_watch
    from lambdaforge.runtime import http

    assert canary_watch.VERSION_DIMENSION == http.VERSION_DIMENSION
    assert (canary_watch.CLIENT_ERRORS, canary_watch.SERVER_ERRORS) == (http.CLIENT_ERRORS, http.SERVER_ERRORS)
    assert canary_watch.ANSWERS in http.status_metrics(200)


def test_the_local_cloud_turns_the_runtimes_emf_lines_into_version_metrics(capsys: pytest.CaptureFixture[str],
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """What CloudWatch Logs does with the inference function's output in AWS, done by `lambdaforge.local.emf`."""
    from aws_lambda_powertools import Metrics

    from lambdaforge.local import emf
    from lambdaforge.observability import add_metrics
    from lambdaforge.runtime import http

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "lambdaforge")
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    metrics = Metrics(service="inference")
    http.version_dimension(metrics)
    add_metrics(metrics, **http.status_metrics(503))
    metrics.flush_metrics()
    [line] = [x for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    [(namespace, data)] = emf.metric_data(line)
    assert namespace == "lambdaforge"
    values = {d["MetricName"]: d["Value"] for d in data}
    assert values == {"Answers": 1.0, "ClientErrors": 0.0, "ServerErrors": 1.0, "Unavailable": 1.0}
    assert {(x["Name"], x["Value"]) for x in data[0]["Dimensions"]} == {("service", "inference"),
                                                                        ("FunctionVersion", "7")}
    assert emf.metric_data("an ordinary log line") == [] and emf.metric_data('{"_aws": "broken"}') == []
