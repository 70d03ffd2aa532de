"""What the catalogue and the run coordination share: the table, number conversion and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from lambdaforge.registry import keys
from lambdaforge.registry.errors import NoRegistryTableError


def open_table(table_name: str, table: Any = None) -> Any:
    """The boto3 Table; a caller that already has one (another endpoint or credentials) passes it."""
    if not table_name and table is None:
        raise NoRegistryTableError("no registry table configured (REGISTRY_TABLE)")
    if table is None:
        from lambdaforge.aws import resource

        table = resource("dynamodb").Table(table_name)
    return table


def read_state(table: Any, recipe: str) -> dict[str, Any]:
    """The recipe's state item as plain values (empty before anything was written)."""
    item = table.get_item(Key=keys.state_key(recipe), ConsistentRead=True).get("Item")
    out: dict[str, Any] = plain(item or {})
    return out


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def plain(value: Any) -> Any:
    """DynamoDB returns Decimal for every number; give callers ints and floats."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def to_dynamo(value: Any) -> Any:
    """DynamoDB takes no floats (Decimal instead) and no None attributes."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [to_dynamo(v) for v in value]
    return value


def condition_failed(exc: Exception) -> bool:
    """A ConditionExpression did not hold (the expected outcome of a guarded write)."""
    response = getattr(exc, "response", None) or {}
    return bool(response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")
