"""Write the API Gateway HTTP API (payload format 2.0) event fixtures under tests/events/.

The base event follows AWS's documented example; each fixture changes method, path and body.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "events"

BASE = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/predict",
    "rawQueryString": "",
    "cookies": ["session=abc"],
    "headers": {
        "accept": "application/json",
        "content-type": "application/json",
        "host": "abc123.execute-api.us-east-1.amazonaws.com",
        "user-agent": "curl/8.4.0",
        "x-amzn-trace-id": "Root=1-65f0c0de-0123456789abcdef01234567",
        "x-forwarded-for": "203.0.113.7",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    },
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "abc123",
        "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "abc123",
        "http": {"method": "POST", "path": "/predict", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                 "userAgent": "curl/8.4.0"},
        "requestId": "JKJaXmPLvHcESHA=",
        "routeKey": "$default",
        "stage": "$default",
        "time": "22/Nov/2026:10:00:00 +0000",
        "timeEpoch": 1795341600000,
    },
    "body": "",
    "isBase64Encoded": False,
}

DIGIT_ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8,
              0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0,
              0, 0]


def event(method: str, path: str, body: object | None = None, *, raw: str | None = None, b64: bool = False,
          headers: dict[str, str] | None = None, query: str = "") -> dict[str, object]:
    ev = copy.deepcopy(BASE)
    ev["rawPath"] = path
    ev["rawQueryString"] = query
    ev["requestContext"]["http"]["method"] = method  # type: ignore[index]
    ev["requestContext"]["http"]["path"] = path  # type: ignore[index]
    text = raw if raw is not None else ("" if body is None else json.dumps(body))
    if b64:
        ev["body"], ev["isBase64Encoded"] = base64.b64encode(text.encode()).decode(), True
    else:
        ev["body"] = text
    if method == "GET":
        ev.pop("body")
    if query:
        ev["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    ev["headers"].update(headers or {})  # type: ignore[attr-defined]
    return ev


FIXTURES: dict[str, dict[str, object]] = {
    "apigw_health.json": event("GET", "/health"),
    "apigw_model.json": event("GET", "/model"),
    "apigw_openapi.json": event("GET", "/openapi.json"),
    "apigw_docs.json": event("GET", "/docs"),
    "apigw_predict_digits.json": event("POST", "/predict", {"instances": [DIGIT_ZERO, DIGIT_ZERO]}),
    "apigw_predict_digits_b64.json": event("POST", "/predict", {"instances": [DIGIT_ZERO]}, b64=True),
    "apigw_predict_text.json": event("POST", "/predict", {"instances": [
        "I was charged twice for my subscription this month", "my parcel was delivered to the wrong address"],
        "top_k": 2}),
    "apigw_predict_malformed.json": event("POST", "/predict", raw='{"instances": [1, 2'),
    "apigw_predict_empty_batch.json": event("POST", "/predict", {"instances": []}),
    "apigw_unknown_route.json": event("GET", "/nope"),
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, ev in FIXTURES.items():
        (OUT / name).write_text(json.dumps(ev, indent=2) + "\n")
    print(f"wrote {len(FIXTURES)} events to {OUT}")


if __name__ == "__main__":
    main()
