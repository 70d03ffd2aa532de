"""The whole pipeline in the embedded cloud: one local cloud (and its gateway) per session.

What several tests need is built by session fixtures, once, whichever test asks first: the first
promotion on the fresh stack and a failed run. Each is recorded as observed, so the test about it
asserts on what happened even when other tests ran first. A test that needs an earlier version to
go back to promotes one itself (`promoted_again`). No test relies on another test having run."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from lambdaforge.cloud.data import upload_path
from lambdaforge.local.cloud import LocalCloud
from lambdaforge.local.gateway import LocalGateway
from lambdaforge.local.up import RunResult, follow, start_gateway, wait_for_new_execution
from lambdaforge.recipes import get_recipe
from lambdaforge.registry import Catalog, CatalogState, Runs, RunState

EPOCHS = 8  # what every digits run trains here (the stack's TrainingHyperparameters)
ONE = [0, 0, 0, 2, 16, 16, 2, 0, 0, 0, 0, 4, 16, 16, 2, 0, 0, 1, 4, 12, 16, 12, 0, 0, 0, 7, 16, 16, 16, 12, 0, 0,
       0, 0, 3, 10, 16, 14, 0, 0, 0, 0, 0, 8, 16, 12, 0, 0, 0, 0, 0, 6, 16, 16, 2, 0, 0, 0, 0, 2, 12, 15, 4, 0]


@dataclass
class Pipeline:
    cloud: LocalCloud
    gateway: LocalGateway
    inbox_url: str
    data: Path
    known: set[str]

    @property
    def bucket(self) -> str:
        return self.cloud.outputs["DataBucketName"]

    def _registry_table(self) -> Any:
        import boto3

        table = boto3.resource("dynamodb", region_name="us-east-1", endpoint_url=self.cloud.endpoint,
                               aws_access_key_id="testing", aws_secret_access_key="testing")
        return table.Table(self.cloud.outputs["RegistryTableName"])

    def catalog(self) -> Catalog:
        return Catalog(self.cloud.outputs["RegistryTableName"], table=self._registry_table())

    def runs(self) -> Runs:
        return Runs(self.cloud.outputs["RegistryTableName"], table=self._registry_table())

    def upload(self, path: Path, name: str | None = None, recipe: str = "digits") -> str:
        return upload_path(self.cloud.client("s3"), self.bucket, recipe, path, name)

    def next_run(self, timeout: float = 120) -> RunResult:
        name = wait_for_new_execution(self.cloud, self.known, timeout=timeout)
        assert name is not None, f"no retraining run started\n{dump_logs(self.cloud)}"
        self.known.add(name)
        return follow(self.cloud, name, None, timeout=600)

    def upload_folder(self, folder: str, **hyperparameters: Any) -> str:
        """A folder dataset (the shipped digits CSV) whose _READY marker holds hyperparameters for the run."""
        s3 = self.cloud.client("s3")
        prefix = f"data/digits/{folder}/"
        s3.upload_file(str(self.data), self.bucket, prefix + "digits.csv")
        s3.put_object(Bucket=self.bucket, Key=prefix + "_READY",
                      Body=json.dumps({"hyperparameters": hyperparameters}).encode())
        return prefix

    def predict(self, instances: list[Any]) -> requests.Response:
        return requests.post(f"{self.gateway.url}/predict", json={"instances": instances}, timeout=60)

    def notifications(self) -> list[str]:
        sqs = self.cloud.client("sqs")
        out: list[str] = []
        deadline = time.time() + 3
        while time.time() < deadline:
            msgs = sqs.receive_message(QueueUrl=self.inbox_url, MaxNumberOfMessages=10,
                                       WaitTimeSeconds=1).get("Messages", [])
            for m in msgs:
                out.append(json.loads(m["Body"]).get("Message", ""))
                sqs.delete_message(QueueUrl=self.inbox_url, ReceiptHandle=m["ReceiptHandle"])
        return out

    def executions(self) -> list[dict[str, Any]]:
        sfn = self.cloud.client("stepfunctions")
        out: list[dict[str, Any]] = sfn.list_executions(stateMachineArn=self.cloud.outputs["StateMachineArn"])[
            "executions"]
        return out

    def next_version(self) -> int:
        """The number the next model that passes its gate gets (numbers are given out after the gate)."""
        return max((v.version for v in self.catalog().versions("digits")), default=0) + 1

    def alias_version(self) -> str:
        out = self.cloud.client("lambda").get_alias(FunctionName=self.cloud.outputs["InferenceFunctionName"],
                                                    Name="live")
        return str(out["FunctionVersion"])


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    state = tmp_path_factory.mktemp("local-cloud")
    # Every upload trains EPOCHS unless it says otherwise: the same data and seed then make the same model,
    # so a new run is exactly as good as live and the champion/challenger gate lets it through.
    # The local EMF path is synchronous (metrics land as the function answers): nothing to settle.
    cloud = LocalCloud(state_dir=state, parameters={"Recipe": "digits", "MetricsSettleSeconds": "0",
                                                    "TrainingHyperparameters": json.dumps({"epochs": EPOCHS})})
    cloud.start()
    try:
        gateway = start_gateway(cloud, 0)
        sqs, sns = cloud.client("sqs"), cloud.client("sns")
        inbox = sqs.create_queue(QueueName="failure-inbox")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=cloud.outputs["FailureTopicArn"], Protocol="sqs", Endpoint=arn)
        data = get_recipe("digits").write_sample_data(state / "data" / "shipped")
        yield Pipeline(cloud=cloud, gateway=gateway, inbox_url=inbox, data=data, known=set())
        gateway.stop()
    finally:
        cloud.stop()


def dump_logs(cloud: LocalCloud) -> str:
    out = []
    for source, lines in cloud.recent_logs():
        out.append(f"== {source}\n" + "\n".join(lines[-25:]))
    return "\n".join(out)


def succeeded(pipeline: Pipeline, run: RunResult) -> None:
    assert run.status == "SUCCEEDED", f"{run.execution}: {run.error}\n{dump_logs(pipeline.cloud)}"


def model_version(pipeline: Pipeline) -> str:
    r = pipeline.predict([ONE])
    assert r.status_code == 200, r.text
    return str(r.json()["model"]["version"])


@dataclass(frozen=True)
class FirstPromotion:
    """The first upload to the fresh stack, as observed."""

    status_before: int  # what /predict answered before anything was promoted
    run: RunResult
    answer: requests.Response  # /predict right after the run
    state: CatalogState  # the catalogue right after the run
    run_state: RunState  # the run coordination right after the run
    seconds: float  # from the upload to the answer


@pytest.fixture(scope="session")
def first_promotion(pipeline: Pipeline) -> FirstPromotion:
    """Every test that uploads depends on this, so it is the first upload to the stack."""
    status_before = pipeline.predict([ONE]).status_code
    started = time.time()
    pipeline.upload(pipeline.data, "first.csv")
    run = pipeline.next_run()
    answer = pipeline.predict([ONE])
    return FirstPromotion(status_before=status_before, run=run, answer=answer,
                          state=pipeline.catalog().state("digits"), run_state=pipeline.runs().state("digits"),
                          seconds=time.time() - started)


@pytest.fixture(scope="session")
def live(pipeline: Pipeline, first_promotion: FirstPromotion) -> Pipeline:
    """The pipeline with a model live and answering."""
    succeeded(pipeline, first_promotion.run)
    return pipeline


@dataclass(frozen=True)
class BadDataRun:
    """A run on data with 63 of its 64 pixel columns missing, as observed."""

    live_before: int | None
    alias_before: str
    run: RunResult
    alias_after: str
    state_after: CatalogState
    run_state_after: RunState
    run_status: str | None  # the run as the registry's run log records it
    messages: list[str]  # the failure notifications it sent (the inbox was emptied first)
    answer_after: requests.Response  # /predict after the run


@pytest.fixture(scope="session")
def bad_data_run(live: Pipeline) -> BadDataRun:
    live_before, alias_before = live.catalog().state("digits").live, live.alias_version()
    live.notifications()  # start from an empty inbox
    bad = live.data.parent / "bad.csv"
    bad.write_text("label,p0\n3,1\n")  # 63 pixel columns missing
    live.upload(bad, "bad.csv")
    run = live.next_run()
    runs = {r["sk"]: r for r in live.runs().log("digits", limit=20)}
    return BadDataRun(live_before=live_before, alias_before=alias_before, run=run, alias_after=live.alias_version(),
                      state_after=live.catalog().state("digits"), run_state_after=live.runs().state("digits"),
                      run_status=runs.get(f"run#{run.execution}", {}).get("status"),
                      messages=live.notifications(), answer_after=live.predict([ONE]))


@pytest.fixture
def promoted_again(live: Pipeline) -> int:
    """A new version promoted now, so that live has an earlier version to go back to; its number."""
    version = live.next_version()
    live.upload_folder(f"again-{uuid.uuid4().hex[:8]}", epochs=EPOCHS)
    succeeded(live, live.next_run())
    assert live.catalog().state("digits").live == version
    return version
