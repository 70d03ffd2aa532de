"""Starting retraining runs: at most one per recipe, exactly one per upload.

Duplicate events are absorbed twice over: Powertools idempotency in the handler, and a
deterministic execution name here. While a run is in progress, new data for the same recipe
is coalesced: the newest dataset waits in the registry's `pending` slot (replacing an older
one) and starts when the running execution releases the lock. Never two training jobs at once.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lambdaforge import envvars
from lambdaforge.pipeline.datasets import MARKER, DatasetSpec, Upload, classify, job_name, parse_marker
from lambdaforge.pipeline.errors import PipelineError, UploadRejectedError
from lambdaforge.pipeline.payloads import ReleaseRequest, RunEnded
from lambdaforge.pipeline.settings import PipelineSettings
from lambdaforge.pipeline.training_job import metric_definitions, sagemaker_hyperparameters, upload_source_bundle
from lambdaforge.registry import Runs, RunState

# How long a lock may have no execution before it counts as abandoned: the trigger's timeout (60 s)
# times its attempts, with room to spare. Younger, its StartExecution may still be in flight.
START_GRACE_SECONDS = 600


@dataclass(frozen=True)
class TriggerOutcome:
    status: str  # started | duplicate | queued | ignored | rejected
    detail: str
    execution: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail, "execution": self.execution}


def known_recipes() -> dict[str, tuple[str, ...]]:
    """Recipe name -> accepted data suffixes, without importing numpy or torch (the trigger has neither)."""
    from lambdaforge.recipes import data_suffixes

    return data_suffixes()


class Trigger:
    def __init__(self, settings: PipelineSettings, *, s3: Any = None, sfn: Any = None, sns: Any = None,
                 runs: Runs | None = None) -> None:
        from lambdaforge.aws import client

        settings.need("artifacts_bucket", "registry_table", "state_machine_arn")
        self.settings = settings
        self.s3 = s3 or client("s3")
        self.sfn = sfn or client("stepfunctions")
        self.sns = sns or client("sns")
        self.runs = runs or Runs(settings.registry_table)

    # --- uploads
    def on_upload(self, upload: Upload) -> TriggerOutcome:
        try:
            spec = classify(upload, prefix=self.settings.data_prefix, known_recipes=known_recipes(),
                            max_bytes=self.settings.max_upload_bytes)
            if spec is None:
                return TriggerOutcome("ignored", f"s3://{upload.bucket}/{upload.key} starts no run "
                                                 "(outside the data prefix, or waiting for a _READY marker)")
            if spec.kind == "folder":
                raw = self.s3.get_object(Bucket=upload.bucket, Key=upload.key, **_version(upload))["Body"].read()
                spec = DatasetSpec(recipe=spec.recipe, s3_uri=spec.s3_uri, kind=spec.kind, version=spec.version,
                                   upload=spec.upload, hyperparameters=parse_marker(raw, spec.s3_uri))
            spec = dataclasses.replace(spec, hyperparameters=self._checked_hyperparameters(spec))
        except UploadRejectedError as exc:
            self._reject(upload, str(exc))
            return TriggerOutcome("rejected", str(exc))
        return self.start_or_queue(spec)

    def _checked_hyperparameters(self, spec: DatasetSpec) -> dict[str, Any]:
        """The stack's defaults and the marker's hyperparameters, checked before any run starts: reserved
        (`sagemaker_*`) and unknown keys, wrong types and out-of-range values are refused, naming the key."""
        from lambdaforge.recipes import hyperparameter_spec
        from lambdaforge.recipes.errors import HyperparameterError
        from lambdaforge.recipes.hparams import check_requested

        declared = hyperparameter_spec(spec.recipe)
        try:
            stack = check_requested(spec.recipe, self.settings.hyperparameters, declared,
                                    source=f"the stack's {envvars.TRAINING_HYPERPARAMETERS}")
            # the job gets the marker's values over the stack's: their relations are checked on that
            return check_requested(spec.recipe, spec.hyperparameters, declared, base=stack,
                                   source=f"{spec.s3_uri}{MARKER} marker")
        except HyperparameterError as exc:
            raise UploadRejectedError(str(exc)) from exc

    def _reject(self, upload: Upload, reason: str) -> None:
        first = upload.key[len(self.settings.data_prefix):].split("/")[0]
        recipe = first if first in known_recipes() else "_rejected"  # uploaders do not name registry partitions
        self.runs.record(recipe, f"rejected-{upload.digest[:16]}", "REJECTED", cause=reason, key=upload.key)
        self.notify(f"lambdaforge: upload rejected ({upload.key})"[:99], reason)

    def notify(self, subject: str, message: str) -> None:
        if self.settings.failure_topic_arn:
            self.sns.publish(TopicArn=self.settings.failure_topic_arn, Subject=subject, Message=message)

    # --- runs
    def start_or_queue(self, spec: DatasetSpec) -> TriggerOutcome:
        name = spec.run_name
        arn = self.settings.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
        lock = self.runs.acquire(spec.recipe, name, arn, spec.upload.uploaded_at)
        if lock is None:
            return self._not_acquired(spec)
        try:
            started = self._start(spec)
        except Exception:
            if lock == "taken":  # never the lock of an execution that was already running under this name
                self.runs.force_release(spec.recipe, name)  # a waiting dataset stays waiting: nothing is lost
            raise
        self.runs.started(spec.recipe, spec.to_json())  # older data delivered from now on never runs
        self.runs.clear_pending(spec.recipe, spec.to_json())  # it, or older data, need not wait any more
        if not started:
            if lock == "taken":  # its execution ran (and released) already: this lock would hold nothing
                self.runs.force_release(spec.recipe, name)
            return TriggerOutcome("duplicate", f"execution {name} already exists", name)
        self.runs.record(spec.recipe, name, "RUNNING", dataset=spec.s3_uri, dataset_version=spec.version)
        return TriggerOutcome("started", f"started {name} for {spec.s3_uri}", name)

    def _not_acquired(self, spec: DatasetSpec) -> TriggerOutcome:
        """Another run holds the lock (its data waits, unless that lock is dead), or newer data has started."""
        name, state = spec.run_name, self.runs.state(spec.recipe)
        if state.running and state.running != name and self._lock_is_stale(state):
            self.runs.force_release(spec.recipe, state.running)  # aborted, timed out, or never started
            return self.start_or_queue(spec)
        if state.running == name:
            return TriggerOutcome("duplicate", f"{name} is already running", name)
        if state.running:
            return self._queue(spec, state.running)
        if state.is_older(spec.upload.uploaded_at):
            return self._supersede(spec, None, f"a run has already started on newer data for {spec.recipe} "
                                               f"(uploaded {state.newest_started})")
        return self.start_or_queue(spec)  # the lock was released in the meantime

    def _queue(self, spec: DatasetSpec, behind: str | None) -> TriggerOutcome:
        name = spec.run_name
        if not self.runs.set_pending(spec.recipe, spec.to_json()):
            if self.runs.state(spec.recipe).running is None:  # the run ended meanwhile: start, do not wait
                return self.start_or_queue(spec)
            return self._supersede(spec, behind, f"newer data for {spec.recipe} is already waiting or training")
        self.runs.record(spec.recipe, name, "QUEUED", dataset=spec.s3_uri, behind=behind)
        return TriggerOutcome("queued", f"{spec.recipe} is busy with {behind}; {name} waits "
                                        "(newer data replaces older waiting data)", name)

    def _supersede(self, spec: DatasetSpec, behind: str | None, why: str) -> TriggerOutcome:
        """Older data than what is waiting or training: never trained, so it never replaces a newer model.
        If it was the waiting dataset itself, it stops waiting."""
        name = spec.run_name
        self.runs.clear_pending(spec.recipe, spec.to_json())
        self.runs.record(spec.recipe, name, "SUPERSEDED", dataset=spec.s3_uri, behind=behind, cause=why)
        state = self.runs.state(spec.recipe)
        if state.running is None and state.pending:  # newer data waits for a lock nobody holds (a dead run's)
            waiting = self.start_or_queue(DatasetSpec.from_json(state.pending))
            return TriggerOutcome("superseded", f"{name}: {why}; the waiting data: {waiting.detail}", name)
        return TriggerOutcome("superseded", f"{name}: {why}", name)

    def _lock_is_stale(self, state: RunState) -> bool:
        """The lock's execution ended, or never started and the trigger that took the lock is long gone.

        A lock taken moments ago may have no execution yet (StartExecution is in flight): that lock is
        live. Taking it over would start a second run beside the first."""
        from botocore.exceptions import ClientError

        if state.running_arn:
            try:
                return bool(self.sfn.describe_execution(executionArn=state.running_arn)["status"] != "RUNNING")
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ExecutionDoesNotExist":
                    raise
        taken = datetime.fromisoformat(state.running_since) if state.running_since else None
        return taken is None or (datetime.now(UTC) - taken).total_seconds() > START_GRACE_SECONDS

    def execution_input(self, spec: DatasetSpec) -> dict[str, Any]:
        source_uri = upload_source_bundle(self.s3, self.settings.artifacts_bucket)
        hps = {**self.settings.hyperparameters, **spec.hyperparameters}
        return {
            "recipe": spec.recipe,
            "dataset": {"s3_uri": spec.s3_uri, "version": spec.version, "key": spec.upload.key},
            "training": {
                "job_name": job_name(spec.recipe, spec.upload.digest),
                "hyperparameters": sagemaker_hyperparameters(spec.recipe, hps, dataset_version=spec.version,
                                                             source_uri=source_uri,
                                                             region=envvars.region()),
                "metric_definitions": metric_definitions(),
            },
        }

    def _start(self, spec: DatasetSpec) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.sfn.start_execution(stateMachineArn=self.settings.state_machine_arn, name=spec.run_name,
                                     input=json.dumps(self.execution_input(spec)))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ExecutionAlreadyExists":
                return False
            raise
        return True

    def release(self, request: ReleaseRequest) -> TriggerOutcome:
        """The end of a run: unlock, record, and start the coalesced pending dataset if there is one."""
        recipe, execution = request.recipe, request.execution
        if request.status == "SUCCEEDED":
            self.runs.record(recipe, execution, "SUCCEEDED")
        self.runs.release(recipe, execution)
        pending = self.runs.state(recipe).pending  # read after the release: a retried release finds it too
        if not pending:
            return TriggerOutcome("released", f"{execution} finished; nothing waiting", execution)
        outcome = self.start_or_queue(DatasetSpec.from_json(pending))
        return TriggerOutcome(outcome.status, f"{execution} finished; {outcome.detail}", outcome.execution)


class RunRecovery:
    """A run that ended outside the workflow's own failure path (aborted, timed out, or failed where
    no Catch applies): stop its training job, take traffic off its canary, record and announce it,
    release the lock and start the data waiting for it. Each step is harmless when already done, as
    it is when the workflow's failure path ran first (EventBridge reports those runs FAILED too)."""

    def __init__(self, trigger: Trigger, *, sagemaker: Any = None, lam: Any = None) -> None:
        from lambdaforge.aws import client

        trigger.settings.need("promote_function")
        self.trigger = trigger
        self.sagemaker = sagemaker or client("sagemaker")
        self.lam = lam or client("lambda")

    def recover(self, ended: RunEnded) -> TriggerOutcome:
        run_input = self._input(ended)
        recipe = str(run_input["recipe"])
        runs = self.trigger.runs
        try:
            self._stop_job(str(run_input.get("training", {}).get("job_name") or ""))
            self._undo_canary(recipe, ended.name)  # only this run's canary weight; harmless to repeat
            if runs.run(recipe, ended.name).get("status") in ("FAILED", "SUCCEEDED"):
                detail = "its failure path had recorded it"
            else:
                cause = f"the run ended {ended.status} outside the workflow's failure path"
                runs.record(recipe, ended.name, "FAILED", cause=cause)
                self.trigger.notify(f"lambdaforge: run {ended.name} {ended.status}"[:99],
                                    f"{cause}: its training job was stopped, its canary (if any) undone, live "
                                    "left as it was, and the run lock released.")
                detail = "recorded and announced"
        finally:  # conditional on the holder: harmless when done, and never another run's lock
            outcome = self.trigger.release(ReleaseRequest(action="release", recipe=recipe, execution=ended.name,
                                                          status="FAILED"))
        return TriggerOutcome("recovered", f"{ended.name} ended {ended.status}; {detail}; {outcome.detail}",
                              ended.name)

    def _input(self, ended: RunEnded) -> dict[str, Any]:
        raw = ended.input
        if not raw:  # EventBridge leaves out a large input: read it from the execution
            raw = self.trigger.sfn.describe_execution(executionArn=ended.executionArn)["input"]
        data: dict[str, Any] = json.loads(raw)
        return data

    def _stop_job(self, job: str) -> None:
        from botocore.exceptions import ClientError

        if not job:
            return
        try:
            if self.sagemaker.describe_training_job(TrainingJobName=job)["TrainingJobStatus"] == "InProgress":
                self.sagemaker.stop_training_job(TrainingJobName=job)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ValidationException":  # no such job, or it just ended
                raise

    def _undo_canary(self, recipe: str, execution: str) -> None:
        """This run's canary weight off alias live, through the promote function (it owns the alias)."""
        payload = {"action": "restore", "recipe": recipe, "execution": execution}  # that run's weight only
        out = self.lam.invoke(FunctionName=self.trigger.settings.promote_function, Payload=json.dumps(payload))
        if out.get("FunctionError"):
            raise PipelineError(f"restoring alias live failed: {out['Payload'].read()[:500]!r}")


def _version(upload: Upload) -> dict[str, str]:
    return {"VersionId": upload.version_id} if upload.version_id and upload.version_id != "null" else {}
