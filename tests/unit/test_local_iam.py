"""The local cloud's IAM evaluation: what AWS allows and denies for one account's identity policies."""

from __future__ import annotations

from typing import Any

import pytest

from lambdaforge.local.iam import classify, evaluate, resource_of, s3_request, trusts

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/registry"
BUCKET = "arn:aws:s3:::artifacts"


def policy(*statements: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"p": {"Version": "2012-10-17", "Statement": list(statements)}}


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_an_action_is_allowed_only_on_the_resources_named() -> None:
    policies = policy(allow(["dynamodb:GetItem", "dynamodb:PutItem"], [TABLE, f"{TABLE}/index/*"]))
    assert evaluate(policies, "dynamodb:PutItem", TABLE).allowed
    assert evaluate(policies, "dynamodb:GetItem", f"{TABLE}/index/by-status").allowed
    assert not evaluate(policies, "dynamodb:PutItem", TABLE + "-other").allowed
    assert not evaluate(policies, "dynamodb:DeleteItem", TABLE).allowed
    assert not evaluate({}, "dynamodb:GetItem", TABLE).allowed  # nothing granted: denied


def test_actions_match_case_insensitively_with_wildcards_and_resources_do_not_over_match() -> None:
    policies = policy(allow("s3:Get*", f"{BUCKET}/models/*"))
    assert evaluate(policies, "s3:getobject", f"{BUCKET}/models/digits/v1/model.onnx").allowed
    assert not evaluate(policies, "s3:GetObject", "arn:aws:s3:::artifactsXmodels/x").allowed
    dotted = policy(allow("s3:GetObject", "arn:aws:s3:::a.b/*"))
    assert not evaluate(dotted, "s3:GetObject", "arn:aws:s3:::aXb/k").allowed  # "." is not a wildcard


def test_an_explicit_deny_wins_and_names_its_statement() -> None:
    policies = policy(allow("s3:*", "*"), {"Sid": "NoDelete", "Effect": "Deny", "Action": "s3:DeleteObject",
                                           "Resource": "*"})
    decision = evaluate(policies, "s3:DeleteObject", f"{BUCKET}/k")
    assert not decision.allowed and decision.statements == ["p/NoDelete"]
    assert evaluate(policies, "s3:GetObject", f"{BUCKET}/k").statements == ["p/#0"]


def test_conditions_on_prefix_and_passed_service() -> None:
    listing = policy(allow("s3:ListBucket", BUCKET, Condition={"StringLike": {"s3:prefix": ["models/*"]}}))
    assert evaluate(listing, "s3:ListBucket", BUCKET, {"s3:prefix": "models/digits/"}).allowed
    assert not evaluate(listing, "s3:ListBucket", BUCKET, {"s3:prefix": "training/"}).allowed
    assert not evaluate(listing, "s3:ListBucket", BUCKET, {}).allowed  # no prefix: the condition fails
    if_exists = policy(allow("s3:ListBucket", BUCKET, Condition={"StringLikeIfExists": {"s3:prefix": "m*"}}))
    assert evaluate(if_exists, "s3:ListBucket", BUCKET, {}).allowed
    passing = policy(allow("iam:PassRole", "arn:aws:iam::1:role/train",
                           Condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))
    assert evaluate(passing, "iam:PassRole", "arn:aws:iam::1:role/train",
                    {"iam:PassedToService": "sagemaker.amazonaws.com"}).allowed
    assert not evaluate(passing, "iam:PassRole", "arn:aws:iam::1:role/train",
                        {"iam:PassedToService": "ec2.amazonaws.com"}).allowed
    unknown = policy(allow("s3:ListBucket", BUCKET, Condition={"NumericLessThan": {"s3:max-keys": "10"}}))
    assert not evaluate(unknown, "s3:ListBucket", BUCKET, {"s3:max-keys": "5"}).allowed  # fails closed


def test_a_role_is_assumable_only_by_the_service_its_trust_policy_names() -> None:
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com"]},
                            "Action": ["sts:AssumeRole"]}]}
    assert trusts(trust, "lambda.amazonaws.com")
    assert not trusts(trust, "sagemaker.amazonaws.com")


@pytest.mark.parametrize(("operation", "iam_action"), [
    ("HeadBucket", "s3:ListBucket"), ("ListObjectsV2", "s3:ListBucket"), ("GetObject", "s3:GetObject"),
    ("DeleteObjects", "s3:DeleteObject"), ("PutObject", "s3:PutObject"),
])
def test_s3_operations_are_checked_as_the_iam_action_aws_uses(operation: str, iam_action: str) -> None:
    key = None if iam_action == "s3:ListBucket" else "models/x"
    request = s3_request(operation, "artifacts", key, {"prefix": ["models/"]})
    assert request.checks[0] == (iam_action, f"{BUCKET}/models/x" if key else BUCKET)
    assert request.context == ({"s3:prefix": "models/"} if iam_action == "s3:ListBucket" else {})


def test_requests_name_the_resource_they_act_on() -> None:
    region, account = "us-east-1", "123456789012"
    assert resource_of("dynamodb", {"TableName": "registry"}, "/", region, account) == TABLE
    assert resource_of("lambda", {}, "/2015-03-31/functions/infer/aliases/live", region, account) == \
        "arn:aws:lambda:us-east-1:123456789012:function:infer"
    assert resource_of("lambda", {"FunctionName": "infer", "Qualifier": "7"}, "/", region, account) == \
        "arn:aws:lambda:us-east-1:123456789012:function:infer:7"
    assert resource_of("sagemaker", {"TrainingJobName": "LF-Digits"}, "/", region, account) == \
        "arn:aws:sagemaker:us-east-1:123456789012:training-job/lf-digits"
    assert resource_of("sqs", {"QueueUrl": "http://x/123456789012/dlq"}, "/", region, account) == \
        "arn:aws:sqs:us-east-1:123456789012:dlq"
    assert resource_of("cloudwatch", {}, "/", region, account) == "*"
    assert resource_of("sts", {}, "/", region, account) == "*"


def test_creating_a_tagged_training_job_also_tags_it_and_passes_its_role() -> None:
    request = classify("sagemaker", "CreateTrainingJob", {"TrainingJobName": "lf-x", "RoleArn": "arn:r",
                                                          "Tags": [{"Key": "k", "Value": "v"}]}, "/", "us-east-1", "1")
    job = "arn:aws:sagemaker:us-east-1:1:training-job/lf-x"
    assert request.checks == (("sagemaker:CreateTrainingJob", job), ("sagemaker:AddTags", job),
                              ("iam:PassRole", "arn:r"))
    assert request.context == {"iam:PassedToService": "sagemaker.amazonaws.com"}


def test_an_operation_is_checked_under_its_iam_action_name() -> None:
    request = classify("lambda", "Invoke", {"FunctionName": "quantize"}, "/", "us-east-1", "1")
    assert request.checks == (("lambda:InvokeFunction", "arn:aws:lambda:us-east-1:1:function:quantize"),)


def test_describing_several_alarms_needs_each_of_them() -> None:
    request = classify("cloudwatch", "DescribeAlarms", {"AlarmNames": ["a", "b"]}, "/", "us-east-1", "1")
    assert request.checks == (("cloudwatch:DescribeAlarms", "arn:aws:cloudwatch:us-east-1:1:alarm:a"),
                              ("cloudwatch:DescribeAlarms", "arn:aws:cloudwatch:us-east-1:1:alarm:b"))


def test_a_deny_with_an_unknown_operator_still_denies_and_a_negation_of_nothing_holds() -> None:
    deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
            "Condition": {"NumericGreaterThan": {"s3:max-keys": "10"}}}
    assert not evaluate(policy(allow("s3:*", "*"), deny), "s3:GetObject", f"{BUCKET}/k").allowed
    only_tls = {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
                "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-1"}}}
    assert not evaluate(policy(allow("s3:*", "*"), only_tls), "s3:GetObject", f"{BUCKET}/k").allowed
    malformed = {"Effect": "allow", "Action": "s3:*", "Resource": "*"}
    assert not evaluate(policy(malformed), "s3:GetObject", f"{BUCKET}/k").allowed


def test_reading_one_version_is_get_object_version() -> None:
    request = s3_request("GetObject", "artifacts", "k", {"versionId": ["3"]})
    assert request.checks == (("s3:GetObjectVersion", f"{BUCKET}/k"),)


def test_a_query_of_an_index_is_checked_against_the_index() -> None:
    assert resource_of("dynamodb", {"TableName": "registry", "IndexName": "by-job"}, "/", "us-east-1",
                       "123456789012") == f"{TABLE}/index/by-job"
