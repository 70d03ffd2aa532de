"""Creating the stack's resources in the embedded cloud, from the translated template itself.

Every CloudFormation type in the template has a creator here or an entry in CLOUD_ONLY with the
reason it has no local counterpart; a test keeps the two lists and the template in step.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambdaforge.local.errors import TemplateError
from lambdaforge.local.intrinsics import Resolver
from lambdaforge.local.lambda_executor import FunctionCode
from lambdaforge.local.template import Translated

CLOUD_ONLY: dict[str, str] = {
    "AWS::CodeDeploy::Application": "code deploys shift traffic through CodeDeploy; locally a promotion moves "
                                    "alias live directly, and `sam deploy` is not run",
    "AWS::CodeDeploy::DeploymentGroup": "see AWS::CodeDeploy::Application",
}


@dataclass
class LocalApi:
    """What the template's HTTP API resources say, for the local gateway to act on."""

    function: str | None = None  # the integration's function name
    qualifier: str | None = None  # its alias
    authorization: str = "NONE"  # AWS_IAM, JWT or NONE
    jwt_issuer: str | None = None
    jwt_audience: list[str] = field(default_factory=list)
    throttle_rate: float | None = None
    throttle_burst: int | None = None


@dataclass
class Context:
    resolver: Resolver
    translated: Translated
    clients: Callable[[str], Any]
    stack_name: str
    region: str
    account: str
    register_code: Callable[[str, FunctionCode], None]
    api: LocalApi = field(default_factory=LocalApi)
    layer_paths: dict[str, Path] = field(default_factory=dict)  # layer version ARN -> local content
    created: dict[str, str] = field(default_factory=dict)  # logical id -> type

    def name(self, logical_id: str, limit: int = 63, lower: bool = False) -> str:
        value = f"{self.stack_name}-{logical_id}"
        value = value.lower() if lower else value
        return re.sub(r"[^A-Za-z0-9-]", "-", value)[:limit].rstrip("-")

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"


Created = tuple[str, dict[str, str]]  # (what Ref returns, GetAtt attributes)


def _tiny_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README", "code runs from the project folder through the local executor\n")
    return buf.getvalue()


# ---------------------------------------------------------------- storage and messaging
def s3_bucket(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    s3 = ctx.clients("s3")
    name = props.get("BucketName") or ctx.name(lid, lower=True)
    s3.create_bucket(Bucket=name)
    if props.get("VersioningConfiguration"):
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=props["VersioningConfiguration"])
    rules = (props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")
    if rules:  # CloudFormation's ServerSideEncryptionByDefault is the API's ApplyServerSideEncryptionByDefault
        api_rules = [{"ApplyServerSideEncryptionByDefault": r["ServerSideEncryptionByDefault"],
                      **({"BucketKeyEnabled": r["BucketKeyEnabled"]} if "BucketKeyEnabled" in r else {})}
                     for r in rules]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": api_rules})
    if props.get("PublicAccessBlockConfiguration"):
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])
    notification = props.get("NotificationConfiguration") or {}
    if (notification.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled"):
        s3.put_bucket_notification_configuration(Bucket=name,
                                                 NotificationConfiguration={"EventBridgeConfiguration": {}})
    if props.get("LifecycleConfiguration"):
        rules = []
        for rule in props["LifecycleConfiguration"]["Rules"]:
            r: dict[str, Any] = {"ID": rule.get("Id", "rule"), "Status": rule["Status"],
                                 "Filter": {"Prefix": rule.get("Prefix", "")}}
            if "ExpirationInDays" in rule:
                r["Expiration"] = {"Days": rule["ExpirationInDays"]}
            if "NoncurrentVersionExpiration" in rule:
                r["NoncurrentVersionExpiration"] = {"NoncurrentDays": rule["NoncurrentVersionExpiration"][
                    "NoncurrentDays"]}
            rules.append(r)
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
    arn = f"arn:aws:s3:::{name}"
    return name, {"Arn": arn, "DomainName": f"{name}.s3.amazonaws.com",
                  "RegionalDomainName": f"{name}.s3.{ctx.region}.amazonaws.com"}


def _without_tls_only(document: dict[str, Any]) -> dict[str, Any]:
    """The embedded cloud speaks plain HTTP on loopback: a TLS-only deny would refuse every local call.
    The rest of the policy applies (moto enforces bucket policies)."""
    kept = [s for s in document.get("Statement", [])
            if "aws:SecureTransport" not in json.dumps(s.get("Condition", {}))]
    return {**document, "Statement": kept}


def s3_bucket_policy(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    document = _without_tls_only(props["PolicyDocument"])
    if document["Statement"]:
        ctx.clients("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(document))
    return lid, {}


def dynamodb_table(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    ddb = ctx.clients("dynamodb")
    name = props.get("TableName") or ctx.name(lid, limit=255)
    kwargs: dict[str, Any] = {"TableName": name, "AttributeDefinitions": props["AttributeDefinitions"],
                              "KeySchema": props["KeySchema"],
                              "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST")}
    if props.get("SSESpecification"):
        kwargs["SSESpecification"] = {"Enabled": bool(props["SSESpecification"].get("SSEEnabled")),
                                      **({"SSEType": props["SSESpecification"]["SSEType"]}
                                         if props["SSESpecification"].get("SSEType") else {})}
    ddb.create_table(**kwargs)
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"],
                                                                         "Enabled": True})
    arn = ctx.arn("dynamodb", f"table/{name}")
    return name, {"Arn": arn, "StreamArn": f"{arn}/stream/local"}


def sns_topic(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    name = props.get("TopicName") or ctx.name(lid, limit=256)
    attrs = {k: str(v) for k, v in (("DisplayName", props.get("DisplayName")),
                                    ("KmsMasterKeyId", props.get("KmsMasterKeyId"))) if v}
    arn = ctx.clients("sns").create_topic(Name=name, Attributes=attrs)["TopicArn"]
    return arn, {"TopicArn": arn, "TopicName": name}


def sqs_queue(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    name = props.get("QueueName") or ctx.name(lid, limit=80)
    attrs = {k: str(props[k]).lower() if isinstance(props[k], bool) else str(props[k])
             for k in ("MessageRetentionPeriod", "VisibilityTimeout", "KmsMasterKeyId", "SqsManagedSseEnabled")
             if k in props}
    url = ctx.clients("sqs").create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    return url, {"Arn": ctx.arn("sqs", name), "QueueName": name, "QueueUrl": url}


def sqs_queue_policy(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    document = _without_tls_only(props["PolicyDocument"])
    for url in props["Queues"]:
        ctx.clients("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(document)})
    return lid, {}


def iam_role(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    iam = ctx.clients("iam")
    name = props.get("RoleName") or ctx.name(lid, limit=64)
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
                           Path=props.get("Path", "/"), Description=str(props.get("Description", ""))[:1000])["Role"]
    for policy in props.get("Policies", []):
        # SAM's policy templates leave out Version (AWS defaults it); moto insists on one
        document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
        iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
    # AWS-managed policies (ManagedPolicyArns) are not attached: moto does not ship them or enforce IAM.
    return name, {"Arn": role["Arn"], "RoleId": role["RoleId"]}


def log_group(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    logs = ctx.clients("logs")
    name = props.get("LogGroupName") or f"/{ctx.stack_name}/{lid}"
    logs.create_log_group(logGroupName=name)
    if props.get("RetentionInDays"):
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
    return name, {"Arn": ctx.arn("logs", f"log-group:{name}:*")}


def cloudwatch_alarm(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    name = props.get("AlarmName") or ctx.name(lid, limit=255)
    keys = ("AlarmDescription", "Namespace", "MetricName", "Dimensions", "Statistic", "ExtendedStatistic", "Period",
            "EvaluationPeriods", "Threshold", "ComparisonOperator", "TreatMissingData")
    kwargs = {k: props[k] for k in keys if k in props}
    for key in ("Period", "EvaluationPeriods"):
        if key in kwargs:
            kwargs[key] = int(kwargs[key])
    if "Threshold" in kwargs:
        kwargs["Threshold"] = float(kwargs["Threshold"])
    ctx.clients("cloudwatch").put_metric_alarm(AlarmName=name, **kwargs)
    return name, {"Arn": ctx.arn("cloudwatch", f"alarm:{name}")}


# ---------------------------------------------------------------- functions
def lambda_layer(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    name = props.get("LayerName") or ctx.name(lid, limit=140)
    out = ctx.clients("lambda").publish_layer_version(LayerName=name, Content={"ZipFile": _tiny_zip()},
                                                      CompatibleRuntimes=props.get("CompatibleRuntimes", []))
    arn = out["LayerVersionArn"]
    source = (props.get("Content") or {}).get("S3Key")
    if source in ctx.translated.code_paths:
        ctx.layer_paths[arn] = ctx.translated.code_paths[source]
    return arn, {"LayerVersionArn": arn}


def lambda_function(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    lam = ctx.clients("lambda")
    name = props.get("FunctionName") or ctx.name(lid, limit=64)
    package_type = props.get("PackageType", "Zip")
    code_key = (props.get("Code") or {}).get("S3Key", lid)
    local_dir = ctx.translated.code_paths.get(code_key) or ctx.translated.code_paths.get(lid)
    if local_dir is None:
        raise TemplateError(f"{lid}: no local code (CodeUri, or DockerBuildArgs.FUNCTION_DIR for images)")
    kwargs: dict[str, Any] = {
        "FunctionName": name, "Role": props["Role"], "Timeout": int(props.get("Timeout", 3)),
        "MemorySize": int(props.get("MemorySize", 128)), "Description": str(props.get("Description", ""))[:256],
        "Environment": props.get("Environment", {"Variables": {}}), "PackageType": package_type,
        # Layers of other accounts (the public Powertools layer) do not exist here; their contents are
        # installed in the project's venv, which the local executor runs the handler with.
        "Layers": [str(x) for x in props.get("Layers", []) if str(x) in ctx.layer_paths],
    }
    if package_type == "Image":
        kwargs["Code"] = {"ImageUri": props["Code"]["ImageUri"]}
        command = ((props.get("ImageConfig") or {}).get("Command") or ["app.lambda_handler"])
        handler = command[0]
        kwargs["ImageConfig"] = {"Command": command}
        # the image copies src/lambdaforge next to the handler (packaging/*/Dockerfile)
        extra = [ctx.translated.root / "src"]
    else:
        kwargs.update(Code={"ZipFile": _tiny_zip()}, Handler=props["Handler"], Runtime=props.get("Runtime"))
        handler = props["Handler"]
        extra = [ctx.layer_paths[a] for a in kwargs["Layers"] if a in ctx.layer_paths]
    out = lam.create_function(**kwargs)
    ctx.register_code(name, FunctionCode(code_dir=local_dir, handler=handler, extra_paths=tuple(extra)))
    return name, {"Arn": out["FunctionArn"]}


def lambda_version(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    out = ctx.clients("lambda").publish_version(FunctionName=props["FunctionName"])
    return out["FunctionArn"], {"Version": out["Version"]}


def lambda_alias(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    out = ctx.clients("lambda").create_alias(FunctionName=props["FunctionName"], Name=props["Name"],
                                             FunctionVersion=str(props["FunctionVersion"]))
    return out["AliasArn"], {}


def lambda_permission(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    kwargs = {"FunctionName": props["FunctionName"], "StatementId": lid, "Action": props["Action"],
              "Principal": props["Principal"]}
    if props.get("SourceArn"):
        kwargs["SourceArn"] = props["SourceArn"]
    ctx.clients("lambda").add_permission(**kwargs)
    return lid, {}


def lambda_event_invoke_config(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    kwargs = {k: props[k] for k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
              if k in props}
    ctx.clients("lambda").put_function_event_invoke_config(FunctionName=props["FunctionName"],
                                                           Qualifier=props.get("Qualifier", "$LATEST"), **kwargs)
    return lid, {}


def events_rule(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    events = ctx.clients("events")
    name = props.get("Name") or ctx.name(lid, limit=64)
    bus = props.get("EventBusName", "default")
    events.put_rule(Name=name, EventPattern=json.dumps(props["EventPattern"]), State=props.get("State", "ENABLED"),
                    EventBusName=bus)
    targets = [{k: v for k, v in t.items() if k in ("Id", "Arn", "Input", "InputPath", "RetryPolicy",
                                                     "DeadLetterConfig", "InputTransformer")}
               for t in props.get("Targets", [])]
    if targets:
        events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    return name, {"Arn": ctx.arn("events", f"rule/{name}")}


def state_machine(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    sfn = ctx.clients("stepfunctions")
    name = props.get("StateMachineName") or ctx.name(lid, limit=80)
    sam_id = (props.get("DefinitionS3Location") or {}).get("Key", lid)
    path = ctx.translated.code_paths.get(sam_id)
    if path is None:
        definition = json.dumps(props["Definition"]) if "Definition" in props else props.get("DefinitionString", "")
    else:
        definition = path.read_text()
    for key, value in (props.get("DefinitionSubstitutions") or {}).items():
        definition = definition.replace("${" + key + "}", str(value))
    leftover = re.findall(r"\$\{(\w+)\}", definition)
    if leftover:
        raise TemplateError(f"{lid}: no substitution for {', '.join(sorted(set(leftover)))}")
    arn = sfn.create_state_machine(name=name, definition=definition, roleArn=props["RoleArn"],
                                   type=props.get("StateMachineType", "STANDARD"))["stateMachineArn"]
    return arn, {"Arn": arn, "Name": name}


# ---------------------------------------------------------------- the HTTP API: served by the local gateway
def apigw_api(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    return "local", {"ApiEndpoint": "http://127.0.0.1"}


def apigw_integration(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    uri = str(props["IntegrationUri"])
    parts = uri.split(":")
    ctx.api.function = parts[6] if uri.startswith("arn:") else uri
    ctx.api.qualifier = parts[7] if uri.startswith("arn:") and len(parts) > 7 else None
    return lid, {}


def apigw_route(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    ctx.api.authorization = props.get("AuthorizationType", "NONE")
    return lid, {}


def apigw_authorizer(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    jwt = props.get("JwtConfiguration") or {}
    ctx.api.jwt_issuer = jwt.get("Issuer")
    ctx.api.jwt_audience = list(jwt.get("Audience") or [])
    return lid, {}


def apigw_stage(ctx: Context, lid: str, props: dict[str, Any]) -> Created:
    settings = props.get("DefaultRouteSettings") or {}
    ctx.api.throttle_rate = float(settings["ThrottlingRateLimit"]) if "ThrottlingRateLimit" in settings else None
    ctx.api.throttle_burst = int(settings["ThrottlingBurstLimit"]) if "ThrottlingBurstLimit" in settings else None
    return lid, {}


CREATORS: dict[str, Callable[[Context, str, dict[str, Any]], Created]] = {
    "AWS::S3::Bucket": s3_bucket,
    "AWS::S3::BucketPolicy": s3_bucket_policy,
    "AWS::DynamoDB::Table": dynamodb_table,
    "AWS::SNS::Topic": sns_topic,
    "AWS::SQS::Queue": sqs_queue,
    "AWS::SQS::QueuePolicy": sqs_queue_policy,
    "AWS::IAM::Role": iam_role,
    "AWS::Logs::LogGroup": log_group,
    "AWS::CloudWatch::Alarm": cloudwatch_alarm,
    "AWS::Lambda::LayerVersion": lambda_layer,
    "AWS::Lambda::Function": lambda_function,
    "AWS::Lambda::Version": lambda_version,
    "AWS::Lambda::Alias": lambda_alias,
    "AWS::Lambda::Permission": lambda_permission,
    "AWS::Lambda::EventInvokeConfig": lambda_event_invoke_config,
    "AWS::Events::Rule": events_rule,
    "AWS::StepFunctions::StateMachine": state_machine,
    "AWS::ApiGatewayV2::Api": apigw_api,
    "AWS::ApiGatewayV2::Integration": apigw_integration,
    "AWS::ApiGatewayV2::Route": apigw_route,
    "AWS::ApiGatewayV2::Authorizer": apigw_authorizer,
    "AWS::ApiGatewayV2::Stage": apigw_stage,
}


def creation_order(ctx: Context) -> list[str]:
    resources = ctx.translated.resources
    deps: dict[str, set[str]] = {}
    for lid, resource in resources.items():
        refs = ctx.resolver.references(resource.get("Properties", {}))
        depends = resource.get("DependsOn", [])
        refs |= set([depends] if isinstance(depends, str) else depends)
        deps[lid] = {r for r in refs if r in resources}
    order: list[str] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(lid: str) -> None:
        if lid in done:
            return
        if lid in visiting:
            raise TemplateError(f"circular reference through {lid}")
        visiting.add(lid)
        for dep in sorted(deps[lid]):
            visit(dep)
        visiting.discard(lid)
        done.add(lid)
        order.append(lid)

    for lid in sorted(resources):
        visit(lid)
    return order


def create_stack(ctx: Context) -> None:
    unknown = ctx.translated.resource_types() - set(CREATORS) - set(CLOUD_ONLY)
    if unknown:
        raise TemplateError(f"resource types with no local counterpart and no cloud-only reason: {sorted(unknown)}")
    for lid in creation_order(ctx):
        resource = ctx.translated.resources[lid]
        if "Condition" in resource and not ctx.resolver.condition(resource["Condition"]):
            continue
        rtype = resource["Type"]
        if rtype in CLOUD_ONLY:
            continue
        props = ctx.resolver.resolve(resource.get("Properties", {}))
        try:
            ref, attrs = CREATORS[rtype](ctx, lid, props)
        except TemplateError:
            raise
        except Exception as exc:
            raise TemplateError(f"{lid} ({rtype}) could not be created locally: {exc}") from exc
        ctx.resolver.physical[lid] = ref
        ctx.resolver.attributes[lid] = attrs
        ctx.created[lid] = rtype
