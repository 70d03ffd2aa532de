"""Uploads that must never replace the live model, through the whole workflow in the embedded cloud:
data with shuffled labels (it trains, then the champion/challenger gate refuses it) and a NaN learning
rate (refused where it is first seen: by the trigger's hyperparameter check, or by the training job's
own). Each fails, the failure is recorded in the registry and announced on SNS, and the live model
keeps answering as the same version.

Both reuse the session's live model (tests/pipeline/conftest.py); each refused run is made once per
module, with few epochs, whichever test asks first."""

from __future__ import annotations

import csv
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from lambdaforge.cloud.runs import RunResult
from lambdaforge.registry import CatalogState, RunState
from tests.pipeline.conftest import ONE, Pipeline, dump_logs, model_version


@dataclass(frozen=True)
class Refusal:
    """One refused run, as observed."""

    answer_before: requests.Response
    live_before: int | None
    alias_before: str
    run: RunResult
    answer_after: requests.Response
    alias_after: str
    state_after: CatalogState
    run_state_after: RunState
    run_status: str | None  # the run as the registry's run log records it
    messages: list[str]  # the failure notifications it sent (the inbox was emptied first)
    reports: list[dict[str, Any]]  # quantization reports the run wrote


def _report_keys(pipeline: Pipeline) -> set[str]:
    s3 = pipeline.cloud.client("s3")
    out = s3.list_objects_v2(Bucket=pipeline.cloud.outputs["ArtifactsBucketName"], Prefix="reports/digits/")
    return {o["Key"] for o in out.get("Contents", []) if o["Key"].endswith(".json")}


def _upload(pipeline: Pipeline, csv_path: Path, hyperparameters: dict[str, Any]) -> str:
    """A folder dataset whose _READY marker holds `hyperparameters`; returns the marker's key."""
    s3 = pipeline.cloud.client("s3")
    prefix = f"data/digits/refused-{uuid.uuid4().hex[:8]}/"
    s3.upload_file(str(csv_path), pipeline.bucket, prefix + "digits.csv")
    s3.put_object(Bucket=pipeline.bucket, Key=prefix + "_READY",
                  Body=json.dumps({"hyperparameters": hyperparameters}).encode())
    return prefix + "_READY"


def _refused_run(pipeline: Pipeline, csv_path: Path, hyperparameters: dict[str, Any]) -> Refusal:
    """Upload a folder dataset whose _READY marker holds `hyperparameters` and follow its run."""
    answer_before = pipeline.predict([ONE])
    live_before, alias_before = pipeline.catalog().state("digits").live, pipeline.alias_version()
    reports_before = _report_keys(pipeline)
    pipeline.notifications()  # start from an empty inbox
    _upload(pipeline, csv_path, hyperparameters)
    run = pipeline.next_run()
    s3 = pipeline.cloud.client("s3")
    runs = {r["sk"]: r for r in pipeline.runs().log("digits", limit=20)}
    bucket = pipeline.cloud.outputs["ArtifactsBucketName"]
    reports = [json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
               for key in sorted(_report_keys(pipeline) - reports_before)]
    return Refusal(answer_before=answer_before, live_before=live_before, alias_before=alias_before, run=run,
                   answer_after=pipeline.predict([ONE]), alias_after=pipeline.alias_version(),
                   state_after=pipeline.catalog().state("digits"), run_state_after=pipeline.runs().state("digits"),
                   run_status=runs.get(f"run#{run.execution}", {}).get("status"), messages=pipeline.notifications(),
                   reports=reports)


@pytest.fixture(scope="module")
def shuffled_labels_run(live: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Refusal:
    """The shipped digits with their labels shuffled: every pixel row is kept, the labels mean nothing."""
    with live.data.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    labels = np.random.default_rng(11).permutation([r[0] for r in body])
    path = tmp_path_factory.mktemp("shuffled") / "digits.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows([str(label), *r[1:]] for label, r in zip(labels, body, strict=True))
    return _refused_run(live, path, {"epochs": 3})


@dataclass(frozen=True)
class NanUpload:
    """An upload whose marker asks for lr=NaN: refused at the trigger (`rejected`) or by its run (`run`)."""

    rejected: dict[str, Any] | None  # the registry's record of the refused upload
    run: Refusal | None
    executions: tuple[int, int]  # workflow executions before, after (trigger refusal only)
    version: tuple[str, str]  # the model /predict answers with, before, after (trigger refusal only)
    alias: tuple[str, str]
    messages: list[str]


@pytest.fixture(scope="module")
def nan_lr_upload(live: Pipeline) -> NanUpload:
    """The marker's JSON says `NaN` (Python's json reads and writes it). Whichever check sees it first
    refuses it: the trigger's, before any run starts, else the training job's."""
    version, alias, executions = model_version(live), live.alias_version(), len(live.executions())
    live.notifications()
    key = _upload(live, live.data, {"epochs": 3, "lr": float("nan")})
    deadline = time.time() + 180
    while True:
        rejected = next((r for r in live.runs().log("digits", limit=500) if r.get("key") == key), None)
        if rejected is not None and rejected.get("status") == "REJECTED":
            return NanUpload(rejected=rejected, run=None, executions=(executions, len(live.executions())),
                             version=(version, model_version(live)), alias=(alias, live.alias_version()),
                             messages=live.notifications())
        if len(live.executions()) > executions:  # it started: the job must refuse it
            return NanUpload(rejected=None, run=_refused_run_started(live, version, alias), executions=(0, 0),
                             version=(version, version), alias=(alias, alias), messages=[])
        assert time.time() < deadline, f"the upload was neither refused nor started\n{dump_logs(live.cloud)}"
        time.sleep(0.5)


def _refused_run_started(pipeline: Pipeline, version: str, alias: str) -> Refusal:
    """`_refused_run` for a run already started by an upload made before the inbox and state were read."""
    answer_before = pipeline.predict([ONE])
    live_before = pipeline.catalog().state("digits").live
    run = pipeline.next_run()
    runs = {r["sk"]: r for r in pipeline.runs().log("digits", limit=20)}
    return Refusal(answer_before=answer_before, live_before=live_before, alias_before=alias, run=run,
                   answer_after=pipeline.predict([ONE]), alias_after=pipeline.alias_version(),
                   state_after=pipeline.catalog().state("digits"), run_state_after=pipeline.runs().state("digits"),
                   run_status=runs.get(f"run#{run.execution}", {}).get("status"), messages=pipeline.notifications(),
                   reports=[])


def assert_live_untouched(refusal: Refusal, pipeline: Pipeline) -> None:
    """The run failed, was recorded and announced, and the live model answers as the same version."""
    assert refusal.run.status == "FAILED", f"{refusal.run.execution}: {refusal.run.error}\n{dump_logs(pipeline.cloud)}"
    assert "PromoteCanary" not in refusal.run.states
    assert refusal.answer_before.status_code == 200, refusal.answer_before.text
    assert refusal.answer_after.status_code == 200, refusal.answer_after.text
    version = refusal.answer_before.json()["model"]["version"]
    assert version == f"digits-v{refusal.live_before}"
    assert refusal.answer_after.json()["model"]["version"] == version
    assert refusal.answer_after.json()["predictions"] == refusal.answer_before.json()["predictions"]
    assert refusal.alias_after == refusal.alias_before
    assert refusal.state_after.live == refusal.live_before and refusal.run_state_after.running is None
    assert refusal.run_status == "FAILED"
    assert refusal.run_state_after.last_failure is not None
    assert refusal.run_state_after.last_failure["execution"] == refusal.run.execution
    assert len(refusal.messages) == 1, refusal.messages
    assert refusal.run.execution in refusal.messages[0] and "did not change" in refusal.messages[0]


def test_shuffled_labels_are_refused_by_the_gate_and_live_keeps_answering(live: Pipeline,
                                                                          shuffled_labels_run: Refusal) -> None:
    refusal = shuffled_labels_run
    assert_live_untouched(refusal, live)
    assert refusal.run.error is not None and "AccuracyGateFailed" in refusal.run.error
    assert "Quantize" in refusal.run.states  # it trained; the gate refused it
    assert refusal.run_state_after.last_failure is not None
    assert refusal.run_state_after.last_failure["error"] == "AccuracyGateFailed"
    assert "AccuracyGateFailed" in refusal.messages[0]
    (report,) = refusal.reports
    assert report["gate_passed"] is False and report["chosen"] == "none"
    # the live model was fetched (under the quantize function's own role) and scored on the same rows
    comparison = report["live"]
    assert comparison["status"] == "compared", comparison
    assert comparison["live_version"] == f"digits-v{refusal.live_before}"
    assert comparison["candidate_metric"] is not None and comparison["candidate_metric"] < comparison["floor"]
    # and on the live model's own held-out rows (the trusted ones), side by side
    assert comparison["live_rows"] and comparison["candidate_metric_on_live_rows"] is not None
    assert comparison["candidate_metric_on_live_rows"] < comparison["live_metric_on_live_rows"]
    assert "below the floor" in report["gate_reason"] and "fp32 fallback" in report["gate_reason"]


def test_a_nan_learning_rate_is_refused_and_live_keeps_answering(live: Pipeline, nan_lr_upload: NanUpload) -> None:
    nan = nan_lr_upload
    if nan.rejected is not None:  # the trigger refused it: no run started
        assert "lr" in nan.rejected["cause"] and "nan" in nan.rejected["cause"].lower()
        assert nan.executions[1] == nan.executions[0]
        assert len(nan.messages) == 1 and nan.rejected["key"] in nan.messages[0], nan.messages
        assert nan.version[1] == nan.version[0] and nan.alias[1] == nan.alias[0]
        return
    refusal = nan.run
    assert refusal is not None
    assert_live_untouched(refusal, live)
    assert refusal.run.error is not None and "TrainingJobFailed" in refusal.run.error
    assert "lr must be a finite number" in refusal.run.error
    assert refusal.run_state_after.last_failure is not None
    assert refusal.run_state_after.last_failure["error"] == "TrainingJobFailed"
    assert "Quantize" not in refusal.run.states
