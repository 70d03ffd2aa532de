"""A small stack in moto (in process) for the pipeline functions' tests: buckets with EventBridge
notifications, the registry and idempotency tables, the failure topic with an SQS subscriber, a
state machine, and the inference function with alias `live`."""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from lambdaforge.local.inprocess import load_handler_module

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "123456789012"


@dataclass
class Stack:
    data_bucket: str = "lf-data"
    artifacts_bucket: str = "lf-artifacts"
    registry_table: str = "lf-registry"
    idempotency_table: str = "lf-idempotency"
    topic_arn: str = ""
    topic_queue_url: str = ""
    events_queue_url: str = ""
    state_machine_arn: str = ""
    inference_function: str = "lf-inference"
    env: dict[str, str] = field(default_factory=dict)

    def client(self, name: str) -> Any:
        return boto3.client(name, region_name=REGION)

    def s3_event(self, key: str, body: bytes = b"label\n1\n") -> dict[str, Any]:
        """Upload to the data bucket and return the EventBridge event moto emitted for it."""
        self.client("s3").put_object(Bucket=self.data_bucket, Key=key, Body=body)
        events = self.drain(self.events_queue_url)
        matching = [e for e in events if e["detail"]["object"]["key"] == key]
        assert matching, f"no EventBridge event for {key}"
        return matching[-1]

    def drain(self, queue_url: str) -> list[dict[str, Any]]:
        sqs = self.client("sqs")
        out = []
        while True:
            msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])

    def notifications(self) -> list[str]:
        return [json.loads(json.dumps(m)).get("Message", "") for m in self.drain(self.topic_queue_url)]

    def executions(self) -> list[dict[str, Any]]:
        return self.client("stepfunctions").list_executions(stateMachineArn=self.state_machine_arn)["executions"]

    def handler(self, name: str) -> Any:
        os.environ.update(self.env)
        return load_handler_module(ROOT / "functions" / name)


def _dummy_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "def lambda_handler(event, context):\n    return event\n")
    return buf.getvalue()


def build(**env_overrides: str) -> Stack:
    stack = Stack()
    s3, ddb, sns, sqs = (boto3.client(n, region_name=REGION) for n in ("s3", "dynamodb", "sns", "sqs"))
    for bucket in (stack.data_bucket, stack.artifacts_bucket):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_notification_configuration(
        Bucket=stack.data_bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    ddb.create_table(TableName=stack.registry_table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}])
    ddb.create_table(TableName=stack.idempotency_table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    stack.topic_arn = sns.create_topic(Name="lf-failures")["TopicArn"]
    stack.topic_queue_url = sqs.create_queue(QueueName="lf-failures-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=stack.topic_queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=stack.topic_arn, Protocol="sqs", Endpoint=inbox_arn,
                  Attributes={"RawMessageDelivery": "false"})
    stack.events_queue_url = sqs.create_queue(QueueName="lf-s3-events")["QueueUrl"]
    events_arn = sqs.get_queue_attributes(QueueUrl=stack.events_queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    events = boto3.client("events", region_name=REGION)
    pattern = {"source": ["aws.s3"], "detail-type": ["Object Created"]}
    events.put_rule(Name="s3-created", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="s3-created", Targets=[{"Id": "q", "Arn": events_arn}])
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="lf-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    sfn = boto3.client("stepfunctions", region_name=REGION)
    stack.state_machine_arn = sfn.create_state_machine(
        name="lf-retrain", roleArn=role,
        definition=json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}}),
    )["stateMachineArn"]
    lam = boto3.client("lambda", region_name=REGION)
    lam.create_function(FunctionName=stack.inference_function, Runtime="python3.12", Role=role,
                        Handler="app.lambda_handler", Code={"ZipFile": _dummy_zip()},
                        Environment={"Variables": {"MODEL_URI": "", "RECIPE": "digits",
                                                   "REGISTRY_TABLE": stack.registry_table}})
    code_version = lam.publish_version(FunctionName=stack.inference_function)["Version"]
    lam.create_alias(FunctionName=stack.inference_function, Name="live", FunctionVersion=code_version)
    stack.env = {
        "DATA_BUCKET": stack.data_bucket, "ARTIFACTS_BUCKET": stack.artifacts_bucket,
        "REGISTRY_TABLE": stack.registry_table, "IDEMPOTENCY_TABLE": stack.idempotency_table,
        "STATE_MACHINE_ARN": stack.state_machine_arn, "FAILURE_TOPIC_ARN": stack.topic_arn,
        "INFERENCE_FUNCTION_NAME": stack.inference_function, "INFERENCE_ALIAS": "live", "CANARY_PERCENT": "10",
        "CANARY_ALARMS": "", "DATA_PREFIX": "data/", "MAX_UPLOAD_BYTES": str(50 * 2**20),
        "CANARY_SECONDS": "0", "METRICS_SETTLE_SECONDS": "0",  # tests decide a canary as soon as they put its data
        "POWERTOOLS_SERVICE_NAME": "test", "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR",
        "POWERTOOLS_METRICS_NAMESPACE": "lambdaforge", "QUANT_MODE": "auto", "MAX_ACCURACY_DROP": "0.005",
        "MIN_ACCURACY": "0.0",
    }
    stack.env.update(env_overrides)
    os.environ.update(stack.env)
    return stack


@contextlib.contextmanager
def running(**env_overrides: str) -> Iterator[Stack]:
    """A fresh moto account with the stack in it; the environment is restored afterwards."""
    from moto import mock_aws

    from lambdaforge.local import fidelity

    saved = dict(os.environ)
    with mock_aws(), fidelity.applied():
        try:
            yield build(**env_overrides)
        finally:
            os.environ.clear()
            os.environ.update(saved)
