"""Least privilege in the translated template: no wildcard actions, PassRole only to SageMaker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any


def statements(translated: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in translated.resources.items():
        props = resource.get("Properties", {})
        docs = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if "PolicyDocument" in props:
            docs.append(props["PolicyDocument"])
        for doc in docs:
            for statement in doc.get("Statement", []):
                yield logical_id, statement


def actions(statement: dict[str, Any]) -> list[str]:
    raw = statement.get("Action", [])
    return [raw] if isinstance(raw, str) else list(raw)


def test_no_allow_statement_has_a_wildcard_action(translated: Any) -> None:
    found = list(statements(translated))
    assert len(found) > 20
    for logical_id, statement in found:
        if statement.get("Effect") != "Allow":
            continue  # deny-insecure-transport statements rightly cover every action
        for action in actions(statement):
            assert action != "*" and not action.endswith(":*"), f"{logical_id}: {action}"
        assert "NotAction" not in statement, logical_id


def test_pass_role_only_to_sagemaker_and_only_the_training_role(translated: Any) -> None:
    passrole = [(lid, s) for lid, s in statements(translated) if "iam:PassRole" in actions(s)]
    assert passrole, "the workflow must be allowed to pass the SageMaker role"
    for logical_id, statement in passrole:
        assert statement["Condition"]["StringEquals"]["iam:PassedToService"] == "sagemaker.amazonaws.com", logical_id
        resource = statement["Resource"]
        assert resource != "*" and resource == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}, logical_id


def test_wildcard_resources_only_for_actions_without_resource_level_permissions(translated: Any) -> None:
    allowed = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "cloudwatch:GetMetricStatistics",
               "xray:PutTraceSegments",
               "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets",
               "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
               "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
               "logs:DescribeLogGroups"}
    for logical_id, statement in statements(translated):
        if statement.get("Effect") == "Allow" and statement.get("Resource") == "*":
            assert set(actions(statement)) <= allowed, f"{logical_id}: {actions(statement)}"


def test_storage_is_private_encrypted_and_versioned(translated: Any) -> None:
    for logical_id, resource in translated.resources.items():
        if resource["Type"] != "AWS::S3::Bucket":
            continue
        props = resource["Properties"]
        assert all(props["PublicAccessBlockConfiguration"].values()), logical_id
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], logical_id
        assert props["VersioningConfiguration"]["Status"] == "Enabled", logical_id
    data = translated.resources["DataBucket"]["Properties"]
    assert data["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True


def test_inference_function_rolls_out_through_alias_live_with_alarms(translated: Any) -> None:
    types = {r["Type"] for r in translated.resources.values()}
    assert {"AWS::Lambda::Alias", "AWS::CodeDeploy::DeploymentGroup"} <= types
    alias = next(r for r in translated.resources.values() if r["Type"] == "AWS::Lambda::Alias")
    assert alias["Properties"]["Name"] == "live"
    group = next(r for r in translated.resources.values() if r["Type"] == "AWS::CodeDeploy::DeploymentGroup")
    assert len(group["Properties"]["AlarmConfiguration"]["Alarms"]) == 2
    env = translated.resources["InferenceFunction"]["Properties"]["Environment"]["Variables"]
    assert env["MODEL_URI"] == ""  # a code deploy serves the registry's live model, never a stale pin


def test_training_jobs_cannot_write_where_the_training_code_lives(translated: Any) -> None:
    # the source bundle under source/ is what every later job runs: a job may read it, never replace it
    role = translated.resources["SageMakerExecutionRole"]["Properties"]
    writes = {"s3:PutObject", "s3:DeleteObject"}
    granted: dict[str, list[str]] = {}
    for policy in role["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for action in set(actions(statement)) & writes:
                granted.setdefault(action, []).extend(json.dumps(r) for r in resources)
    assert set(granted) == writes
    for resource in (r for rs in granted.values() for r in rs):  # objects only under the job's output prefixes
        assert "/training/*" in resource or "/checkpoints/*" in resource or "Fn::GetAtt" in resource, resource


def test_each_function_that_writes_tmp_knows_its_ephemeral_storage(translated: Any) -> None:
    for logical_id, resource in translated.resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] != "AWS::Lambda::Function" or "EphemeralStorage" not in props:
            continue
        env = props["Environment"]["Variables"]
        assert env.get("EPHEMERAL_STORAGE_MB") == str(props["EphemeralStorage"]["Size"]), logical_id
