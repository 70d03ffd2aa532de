"""IAM in the local cloud: a request signed with a role's credentials is allowed only if that role's
policies allow it, as in AWS, and every such request is recorded for the permission audit.

moto can enforce IAM itself, but it checks most services against the resource "*", so a policy
scoped to a table or a function (all of ours) denies everything, and conditions only match what
the caller sends. This evaluates identity policies the way AWS does for one account: the action,
the resource ARN taken from the request, the conditions we use (`s3:prefix`,
`iam:PassedToService`), explicit Deny first. It also gives S3's answer to a read of a missing key
without `s3:ListBucket`: 403, not 404.

Who is who: the administrator keys (stack creation, the CLI, test setup) may do anything. Every
other caller holds credentials from `credentials()`, issued for one role after its trust policy is
checked for the calling service. moto's Step Functions interpreter signs with the fixed key "ak":
that key acts as the state machine's role. Not evaluated: resource policies (bucket and queue
policies; ours only deny plain HTTP, which the local endpoint is), permission boundaries, SCPs.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import unquote, urlparse

INTERPRETER_KEY = "ak"  # moto's Step Functions interpreter signs its service calls with this key

# IAM's name for each S3 operation that moto reports by its API name (the rest are the same).
S3_IAM_ACTIONS = {
    "HeadBucket": "ListBucket", "ListObjects": "ListBucket", "ListObjectsV2": "ListBucket",
    "ListBuckets": "ListAllMyBuckets", "DeleteObjects": "DeleteObject", "CopyObject": "PutObject",
    "UploadPartCopy": "PutObject", "ListParts": "ListMultipartUploadParts",
    "ListMultipartUploads": "ListBucketMultipartUploads", "ListObjectVersions": "ListBucketVersions",
    "GetObjectAttributes": "GetObject",
}
# IAM's name for the API operations whose action is named otherwise.
IAM_ACTIONS = {("lambda", "Invoke"): "InvokeFunction", ("lambda", "Invoke20150331"): "InvokeFunction"}
# Condition operators evaluated here; a statement with any other one never grants and always denies.
KNOWN_OPERATORS = frozenset({"StringEquals", "ArnEquals", "Bool", "StringLike", "ArnLike", "StringNotEquals",
                             "StringNotLike"})
# The IAM prefix of each SigV4 signing name that differs from it.
IAM_PREFIX = {"monitoring": "cloudwatch", "execute-api": "execute-api"}


@dataclass(frozen=True)
class Principal:
    role_name: str
    role_arn: str
    session: str

    @property
    def arn(self) -> str:
        account = self.role_arn.split(":")[4]
        return f"arn:aws:sts::{account}:assumed-role/{self.role_name}/{self.session}"


@dataclass(frozen=True)
class Call:
    """One request a role made: what it asked, on what, and which statements allowed it."""

    role: str
    action: str
    resource: str
    allowed: bool
    statements: tuple[str, ...] = ()


@dataclass
class Decision:
    allowed: bool
    statements: list[str] = field(default_factory=list)


# --- policy evaluation
@cache
def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(f"^{regex}$", re.IGNORECASE if ignore_case else 0)


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def any_match(globs: Any, value: str, *, ignore_case: bool = False) -> bool:
    return any(_pattern(g, ignore_case).match(value) for g in _listed(globs))


def _condition_holds(operator: str, key: str, expected: Any, context: dict[str, str], *, deny: bool) -> bool:
    """Whether one condition holds. Unknown operators never widen an Allow, and always apply a Deny."""
    base, if_exists = (operator[:-8], True) if operator.endswith("IfExists") else (operator, False)
    if base not in KNOWN_OPERATORS:
        return deny  # fail closed either way
    if key not in context:
        return if_exists or base in ("StringNotEquals", "StringNotLike")  # AWS: a negation of nothing holds
    actual = context[key]
    wanted = _listed(expected)
    if base in ("StringEquals", "ArnEquals", "Bool"):
        return actual in wanted
    if base in ("StringLike", "ArnLike"):
        return any_match(wanted, actual)
    if base == "StringNotEquals":
        return actual not in wanted
    return not any_match(wanted, actual)  # StringNotLike


def _conditions_hold(conditions: dict[str, dict[str, Any]] | None, context: dict[str, str], *,
                     deny: bool = False) -> bool:
    return all(_condition_holds(op, key, value, context, deny=deny)
               for op, pairs in (conditions or {}).items() for key, value in pairs.items())


def statement_applies(statement: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    if "Action" in statement and not any_match(statement["Action"], action, ignore_case=True):
        return False
    if "NotAction" in statement and any_match(statement["NotAction"], action, ignore_case=True):
        return False
    if "Resource" in statement and not any_match(statement["Resource"], resource):
        return False
    if "NotResource" in statement and any_match(statement["NotResource"], resource):
        return False
    return _conditions_hold(statement.get("Condition"), context, deny=statement.get("Effect") != "Allow")


def statements(policies: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, statement) of each statement: "PolicyName/Sid", or "PolicyName/#index" without a Sid."""
    for name, document in policies.items():
        for index, statement in enumerate(_listed_statements(document)):
            yield f"{name}/{statement.get('Sid') or f'#{index}'}", statement


def _listed_statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    body = document.get("Statement", [])
    return [body] if isinstance(body, dict) else list(body)


def evaluate(policies: dict[str, dict[str, Any]], action: str, resource: str,
             context: dict[str, str] | None = None) -> Decision:
    """Identity-policy evaluation as AWS does it: an explicit Deny wins, else any Allow, else denied."""
    decision = Decision(allowed=False)
    for label, statement in statements(policies):
        if not statement_applies(statement, action, resource, context or {}):
            continue
        if statement.get("Effect") != "Allow":  # Deny, or anything malformed: never a grant
            return Decision(allowed=False, statements=[label])
        decision.statements.append(label)
    decision.allowed = bool(decision.statements)
    return decision


def trusts(trust_policy: dict[str, Any], service: str) -> bool:
    """Whether a role's trust policy lets `service` (e.g. lambda.amazonaws.com) assume it."""
    for statement in _listed_statements(trust_policy):
        principal = statement.get("Principal") or {}
        services = _listed(principal.get("Service")) if isinstance(principal, dict) else []
        if (statement.get("Effect") == "Allow" and service in services
                and any_match(statement.get("Action", []), "sts:AssumeRole", ignore_case=True)):
            return True
    return False


# --- what a request asks for
@dataclass(frozen=True)
class Request:
    """One API request as IAM sees it: the actions it needs, each on a resource, with its context."""

    checks: tuple[tuple[str, str], ...]  # (action, resource ARN)
    context: dict[str, str]


def _arn(service: str, region: str, account: str, resource: str) -> str:
    return f"arn:aws:{service}:{region}:{account}:{resource}"


def _lambda_resource(params: dict[str, Any], path: str, region: str, account: str) -> str:
    """The function's ARN, qualified when the request names a version or alias to act on."""
    name = str(params.get("FunctionName") or "")
    if not name:
        match = re.search(r"/functions/([^/]+)", path)
        name = unquote(match.group(1)) if match else "*"
    if name.startswith("arn:"):
        return name
    base = _arn("lambda", region, account, f"function:{name}")
    return f"{base}:{params['Qualifier']}" if params.get("Qualifier") else base


def _alarm(params: dict[str, Any], region: str, account: str) -> str | None:
    """The alarm a request names (AlarmNames for the plural actions; AlarmName for PutMetricAlarm,
    SetAlarmState, DescribeAlarmHistory), as IAM checks them against the alarm's ARN."""
    names = _listed(params.get("AlarmNames")) or _listed(params.get("AlarmName"))
    return _arn("cloudwatch", region, account, f"alarm:{names[0]}") if names else None


def _queue(params: dict[str, Any], region: str, account: str) -> str | None:
    url = str(params.get("QueueUrl") or "")
    return _arn("sqs", region, account, url.rstrip("/").rsplit("/", 1)[-1]) if url else None


def _named(service: str, template: str, param: str) -> Callable[[dict[str, Any], str, str], str | None]:
    def arn(params: dict[str, Any], region: str, account: str) -> str | None:
        value = params.get(param)
        return _arn(service, region, account, template.format(value)) if value else None

    return arn


# The resource each service's requests act on, from the request's parameters (None: "*").
_RESOURCES: dict[str, Callable[[dict[str, Any], str, str], str | None]] = {
    "dynamodb": _named("dynamodb", "table/{}", "TableName"),
    "states": lambda p, _r, _a: p.get("executionArn") or p.get("stateMachineArn"),
    "sagemaker": lambda p, r, a: _named("sagemaker", "training-job/{}", "TrainingJobName")(
        {"TrainingJobName": str(p.get("TrainingJobName") or "").lower()}, r, a),
    "sns": lambda p, _r, _a: p.get("TopicArn") or p.get("TargetArn"),
    "sqs": _queue,
    "cloudwatch": _alarm,
    "logs": _named("logs", "log-group:{}:*", "logGroupName"),
}


def resource_of(prefix: str, params: dict[str, Any], path: str, region: str, account: str) -> str:
    """The ARN IAM checks for one request of ours; "*" for actions that take no resource."""
    if prefix == "lambda":
        return _lambda_resource(params, path, region, account)
    if prefix == "dynamodb" and params.get("TableName") and params.get("IndexName"):  # a query of an index
        return _arn("dynamodb", region, account, f"table/{params['TableName']}/index/{params['IndexName']}")
    rule = _RESOURCES.get(prefix)
    return str((rule(params, region, account) if rule else None) or "*")


def classify(prefix: str, action: str, params: dict[str, Any], path: str, region: str, account: str) -> Request:
    iam_action = IAM_ACTIONS.get((prefix, action), action)
    checks = [(f"{prefix}:{iam_action}", resource_of(prefix, params, path, region, account))]
    context: dict[str, str] = {}
    if prefix == "sagemaker" and action.startswith("Create") and params.get("Tags"):  # tag-on-create
        checks.append(("sagemaker:AddTags", checks[0][1]))
    if prefix == "sagemaker" and params.get("RoleArn"):  # handing a role to a job is iam:PassRole on it
        checks.append(("iam:PassRole", str(params["RoleArn"])))
        context["iam:PassedToService"] = "sagemaker.amazonaws.com"
    for name in _listed(params.get("AlarmNames"))[1:] if prefix == "cloudwatch" else []:  # each alarm named
        checks.append((f"cloudwatch:{iam_action}", _arn("cloudwatch", region, account, f"alarm:{name}")))
    if prefix == "dynamodb" and action in ("TransactWriteItems", "TransactGetItems"):
        for item in params.get("TransactItems", []):
            for op, body in item.items():
                verb = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                        "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}[op]
                checks.append((f"dynamodb:{verb}", _arn("dynamodb", region, account, f"table/{body['TableName']}")))
    return Request(checks=tuple(checks), context=context)


def s3_request(action: str, bucket: str | None, key: str | None, query: dict[str, Any]) -> Request:
    iam_action = f"s3:{S3_IAM_ACTIONS.get(action, action)}"
    if iam_action == "s3:GetObject" and "versionId" in query:  # a read (GET or HEAD) of one version
        iam_action = "s3:GetObjectVersion"
    resource = f"arn:aws:s3:::{bucket}/{key}" if bucket and key else f"arn:aws:s3:::{bucket or '*'}"
    context: dict[str, str] = {}
    if iam_action == "s3:ListBucket":
        prefix = query.get("prefix")
        if prefix:
            context["s3:prefix"] = prefix[0] if isinstance(prefix, list) else str(prefix)
    return Request(checks=((iam_action, resource),), context=context)


# --- the enforcer
class AccessDeniedError(Exception):
    """A role asked for what its policies do not allow (turned into the service's own HTTP error)."""

    def __init__(self, principal: Principal, action: str, resource: str) -> None:
        self.principal, self.action, self.resource = principal, action, resource
        super().__init__(f"User: {principal.arn} is not authorized to perform: {action} on resource: {resource} "
                         f"because no identity-based policy allows the {action} action")


class Enforcer:
    """The access keys the local cloud issued, the policies behind them, and the calls they made."""

    def __init__(self, account: str, admin_keys: set[str]) -> None:
        self.account = account
        self.admin_keys = set(admin_keys)
        self.enabled = False
        self._principals: dict[str, Principal] = {}
        self._lock = threading.Lock()
        self.calls: list[Call] = []

    # principals
    def register(self, access_key: str, principal: Principal) -> None:
        with self._lock:
            self._principals[access_key] = principal

    def principal(self, access_key: str) -> Principal | None:
        """None for an administrator key; raises for a key nobody issued."""
        if access_key in self.admin_keys:
            return None
        with self._lock:
            found = self._principals.get(access_key)
        if found is None:
            raise UnknownKeyError(access_key)
        return found

    def policies(self, principal: Principal) -> dict[str, dict[str, Any]]:
        from moto.iam.models import iam_backends

        role = iam_backends[self.account]["aws"].get_role(principal.role_name)
        out = {name: json.loads(doc) if isinstance(doc, str) else doc for name, doc in role.policies.items()}
        for arn, policy in role.managed_policies.items():
            version = next(v for v in policy.versions if v.is_default)
            doc = version.document
            out[arn] = json.loads(doc) if isinstance(doc, str) else doc
        return out

    # decisions
    def check(self, principal: Principal | None, request: Request) -> None:
        """Raise AccessDeniedError unless every action of the request is allowed; record each."""
        if principal is None:
            return
        policies = self.policies(principal)
        for action, resource in request.checks:
            decision = evaluate(policies, action, resource, request.context)
            self._record(Call(principal.role_name, action, resource, decision.allowed, tuple(decision.statements)))
            if not decision.allowed:
                raise AccessDeniedError(principal, action, resource)

    def allows(self, principal: Principal, action: str, resource: str) -> bool:
        """A permission S3 consults on its own (ListBucket, for a missing key): recorded like a call."""
        decision = evaluate(self.policies(principal), action, resource)
        self._record(Call(principal.role_name, action, resource, decision.allowed, tuple(decision.statements)))
        return decision.allowed

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)


class UnknownKeyError(Exception):
    def __init__(self, access_key: str) -> None:
        super().__init__(f"The security token included in the request is invalid (access key {access_key!r} "
                         "was not issued by this local cloud)")


def access_key_of(headers: Any) -> str | None:
    auth = headers.get("Authorization") or ""
    match = re.search(r"Credential=([^/]+)/", auth)
    return match.group(1) if match else None


def signing_prefix(headers: Any) -> str:
    auth = headers.get("Authorization") or ""
    match = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", auth)
    service = match.group(1) if match else ""
    return IAM_PREFIX.get(service, service)


def request_path(response: Any) -> str:
    return urlparse(getattr(response, "uri", "") or "").path


# --- the hooks into moto's request handling
def _plain(value: Any) -> Any:
    return value.original_dict() if hasattr(value, "original_dict") else value


def request_params(response: Any) -> dict[str, Any]:
    """The request's parameters as botocore named them, whichever protocol carried them."""
    params = getattr(response, "params", None)
    if params:
        return dict(_plain(params))
    from moto.core.parse import PROTOCOL_PARSERS
    from moto.core.request import determine_request_protocol
    from moto.core.responses import get_service_model

    request = response.normalized_request
    try:
        model = get_service_model(response.boto3_service_name)
        operation = model.operation_model(response._get_action())
        parser = PROTOCOL_PARSERS[determine_request_protocol(model, request.content_type)](operation)
        parsed = parser.parse({"method": request.method, "values": request.values, "headers": request.headers,
                               "body": request.data, "url_path": request.path,
                               "url_params": getattr(response, "uri_match", None) or {}})
        return dict(_plain(parsed))
    except Exception:  # an operation botocore cannot parse: what the query string and a JSON body say
        out: dict[str, Any] = {k: v[0] if isinstance(v, list) and len(v) == 1 else v
                               for k, v in (response.querystring or {}).items()}
        try:
            body = json.loads(response.body or b"{}")
        except (ValueError, TypeError):
            body = {}
        return {**out, **(body if isinstance(body, dict) else {})}


def _denied(response: Any, message: str) -> Exception:
    """AWS's AccessDenied in the protocol of the service asked (JSON services name it ...Exception)."""
    from moto.core.exceptions import JsonRESTError, _RESTError
    from moto.core.responses import get_service_model

    class Denied(_RESTError):
        code = 403

    class JsonDenied(JsonRESTError):
        code = 403

    try:
        protocol = get_service_model(response.boto3_service_name).protocol
    except Exception:
        protocol = "query"
    if protocol in ("json", "rest-json", "smithy-rpc-v2-cbor"):
        return JsonDenied("AccessDeniedException", message)
    return Denied("AccessDenied", message)


def _enforced(enforcer: Enforcer, response: Any) -> bool:
    """Requests to the local cloud's server only: moto's classes are patched process-wide, and an
    in-process `mock_aws` beside a running local cloud is another account model, not ours to police."""
    return enforcer.enabled and bool(getattr(response, "is_werkzeug_request", False))


def _caller(enforcer: Enforcer, response: Any) -> Principal | None:
    """The principal behind the request's key; None for an administrator. Raises for an unknown key."""
    from moto.core.exceptions import InvalidClientTokenIdError

    key = access_key_of(response.headers)
    try:
        return enforcer.principal(key or "")
    except UnknownKeyError:
        raise InvalidClientTokenIdError() from None


def normal_hook(enforcer: Enforcer) -> Any:
    """Replaces moto's check for every service but S3."""

    def authorize(response: Any, resource: str = "*") -> None:
        if not _enforced(enforcer, response):
            return
        principal = _caller(enforcer, response)
        if principal is None:
            return
        request = classify(signing_prefix(response.headers), response._get_action(),
                           request_params(response), request_path(response), response.region, enforcer.account)
        try:
            enforcer.check(principal, request)
        except AccessDeniedError as exc:
            raise _denied(response, str(exc)) from None

    return authorize


def s3_hook(enforcer: Enforcer) -> Any:
    """Replaces moto's check for S3, with S3's 403 for a missing key the caller may not list."""
    from moto.s3.exceptions import S3AccessDeniedError

    class Denied(S3AccessDeniedError):
        def __init__(self, message: str) -> None:
            super().__init__()
            self.message = message

    def authorize(response: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        if not _enforced(enforcer, response):
            return
        principal = _caller(enforcer, response)
        if principal is None:
            return
        action = str(response.data.get("Action") or "")
        request = s3_request(action, bucket_name, key_name, response.querystring or {})
        try:
            enforcer.check(principal, request)
            if request.checks[0][0] == "s3:GetObject" and bucket_name and key_name:
                _missing_key_needs_list(enforcer, principal, bucket_name, key_name)
        except AccessDeniedError as exc:
            raise Denied(str(exc)) from None

    return authorize


def _missing_key_needs_list(enforcer: Enforcer, principal: Principal, bucket: str, key: str) -> None:
    """S3 answers a read of a missing key with 404 only to a caller allowed s3:ListBucket; others get 403."""
    from moto.s3.models import s3_backends

    store = s3_backends[enforcer.account]["aws"].buckets.get(bucket)
    if store is None or store.keys.get(key) is not None:
        return
    if not enforcer.allows(principal, "s3:ListBucket", f"arn:aws:s3:::{bucket}"):
        raise AccessDeniedError(principal, "s3:ListBucket", f"arn:aws:s3:::{bucket}")
