"""The whole pipeline in the embedded cloud: one local cloud (and its gateway) per test module."""

from __future__ import annotations

import json
import time
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
from lambdaforge.registry import Registry


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

    def registry(self) -> Registry:
        import boto3

        table = boto3.resource("dynamodb", region_name="us-east-1", endpoint_url=self.cloud.endpoint,
                               aws_access_key_id="testing", aws_secret_access_key="testing")
        return Registry(self.cloud.outputs["RegistryTableName"],
                        table=table.Table(self.cloud.outputs["RegistryTableName"]))

    def upload(self, path: Path, name: str | None = None, recipe: str = "digits") -> str:
        return upload_path(self.cloud.client("s3"), self.bucket, recipe, path, name)

    def next_run(self, timeout: float = 120) -> RunResult:
        name = wait_for_new_execution(self.cloud, self.known, timeout=timeout)
        assert name is not None, "no retraining run started"
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

    def alias_version(self) -> str:
        out = self.cloud.client("lambda").get_alias(FunctionName=self.cloud.outputs["InferenceFunctionName"],
                                                    Name="live")
        return str(out["FunctionVersion"])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    state = tmp_path_factory.mktemp("local-cloud")
    cloud = LocalCloud(state_dir=state, parameters={"Recipe": "digits"})
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
