"""The registry's key layout is defined once, in lambdaforge.registry.keys: the template's key schema and
every DynamoDB task of the workflow that touches the registry table use only the keys, attribute names
and status values that module defines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from lambdaforge.registry import keys

REGISTRY_TABLE = "${RegistryTable}"
KIND_ATTRIBUTES = {"state": keys.STATE_ATTRIBUTES, "version": keys.VERSION_ATTRIBUTES, "run": keys.RUN_ATTRIBUTES}
KIND_STATUSES = {"version": keys.VERSION_STATUSES, "run": keys.RUN_STATUSES}
EXPRESSION_WORDS = {"SET", "REMOVE", "ADD", "DELETE", "AND", "OR", "NOT", "IN", "BETWEEN", "if_not_exists",
                    "list_append", "attribute_exists", "attribute_not_exists", "attribute_type", "begins_with",
                    "contains", "size"}
FORMAT = re.compile(r"^States\.Format\('([^']*)',")


def dynamodb_tasks(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every DynamoDB service-integration task, also inside Parallel branches and Map iterators."""
    for name, state in states.items():
        if state.get("Type") == "Task" and state["Resource"].startswith("arn:aws:states:::dynamodb:"):
            yield name, state
        for branch in state.get("Branches", []):
            yield from dynamodb_tasks(branch["States"])
        for inner in ("Iterator", "ItemProcessor"):
            if inner in state:
                yield from dynamodb_tasks(state[inner]["States"])


def registry_tasks(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s["Parameters"] for n, s in dynamodb_tasks(asl["States"])
            if s["Parameters"].get("TableName") == REGISTRY_TABLE}


def key_template(value: dict[str, Any]) -> str:
    """A key value as the Python format it must equal: a literal stays, States.Format gives its template."""
    if set(value) == {"S"}:
        return str(value["S"])
    found = FORMAT.match(str(value.get("S.$", "")))
    if set(value) != {"S.$"} or not found:
        raise AssertionError(f"a key value must be a string or a States.Format of one: {value}")
    return found.group(1)


def item_kind(key: dict[str, Any]) -> str:
    """Which item the task writes (state, version or run), from its key; fails on any other layout."""
    assert set(key) == {keys.PK, keys.SK}, f"key attributes {sorted(key)}, the table's are {keys.PK}, {keys.SK}"
    assert key_template(key[keys.PK]) == keys.PK_FORMAT, key[keys.PK]
    sk = key_template(key[keys.SK])
    if sk == keys.STATE_SK:
        return "state"
    if sk == keys.RUN_SK_FORMAT:
        return "run"
    if sk.startswith(keys.VERSION_SK_PREFIX) and sk.removeprefix(keys.VERSION_SK_PREFIX).isdigit():
        return "version"
    raise AssertionError(f"sort key {sk!r} is none of the layouts in lambdaforge.registry.keys")


def expression_attributes(params: dict[str, Any]) -> set[str]:
    """The top-level attribute names the task's expressions name, with #placeholders resolved."""
    names = params.get("ExpressionAttributeNames", {})
    found: set[str] = set()
    for field in ("UpdateExpression", "ConditionExpression", "ProjectionExpression"):
        for token in re.findall(r"[#:]?[A-Za-z_][\w]*(?:\.[\w]+|\[\d+\])*", params.get(field, "")):
            if token.startswith(":") or token in EXPRESSION_WORDS:
                continue
            head = re.split(r"[.\[]", token)[0]
            assert not head.startswith("#") or head in names, f"{head} is not in ExpressionAttributeNames"
            found.add(names.get(head, head))
    return found


def assigned_values(params: dict[str, Any]) -> dict[str, Any]:
    """Attribute name -> the value an UpdateExpression's SET gives it (for the literal checks)."""
    names = params.get("ExpressionAttributeNames", {})
    values = params.get("ExpressionAttributeValues", {})
    pairs = re.findall(r"([#\w]+)\s*=\s*(:\w+)", params.get("UpdateExpression", ""))
    return {names.get(attr, attr): values[value] for attr, value in pairs if value in values}


def test_the_template_key_schema_is_the_one_the_module_defines(translated: Any) -> None:
    table = translated.source["Resources"]["RegistryTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": keys.PK, "KeyType": "HASH"},
                                  {"AttributeName": keys.SK, "KeyType": "RANGE"}]
    assert {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]} == {keys.PK: "S",
                                                                                                keys.SK: "S"}


def test_the_failure_path_tasks_are_among_those_checked(asl: dict[str, Any]) -> None:
    assert {"RecordFailure", "RecordLastFailure"} <= set(registry_tasks(asl))


def test_every_registry_task_uses_only_the_module_key_layout(asl: dict[str, Any]) -> None:
    for name, params in registry_tasks(asl).items():
        dynamic = sorted(k for k in params if k.endswith("Expression.$") or k in ("Key.$", "Item.$"))
        assert not dynamic, f"{name}: {dynamic} cannot be checked against the key layout"
        key = params.get("Key") or {k: v for k, v in params.get("Item", {}).items() if k in (keys.PK, keys.SK)}
        kind = item_kind(key)
        allowed = KIND_ATTRIBUTES[kind]
        used = expression_attributes(params) | set(params.get("ExpressionAttributeNames", {}).values())
        used |= set(params.get("Item", {}))
        assert used <= allowed, f"{name} writes {sorted(used - allowed)}, which the {kind} item does not define"
        assigned = assigned_values(params)
        status = assigned.get(keys.STATUS, {})
        if "S" in status:
            assert status["S"] in KIND_STATUSES[kind], f"{name}: status {status['S']!r}"
        failure = assigned.get(keys.LAST_FAILURE, {})
        if "M" in failure:
            assert set(failure["M"]) <= keys.FAILURE_FIELDS, f"{name}: last_failure fields {sorted(failure['M'])}"
