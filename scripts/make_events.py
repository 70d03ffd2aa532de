"""Write the event fixtures under tests/events/, the one source of the events the tests send.

Each base event has the shape `sam local generate-event` (and AWS's documented examples) give:
API Gateway HTTP API payload 2.0 (`apigateway http-api-proxy`), an S3 put notification (`s3 put`),
and EventBridge events (the S3 "Object Created" notification, an EC2 state change). Each fixture
changes only what it is about; tests override single fields with `tests.conftest.load_event`.
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

S3_PUT = {
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "1970-01-01T00:00:00.000Z",
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "EXAMPLE"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": "EXAMPLE123456789",
                                 "x-amz-id-2": "EXAMPLE123/5678abcdefghijklambdaisawesome/mnopqrstuvwxyzABCDEFGH"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "testConfigRule",
                "bucket": {"name": "lf-data", "ownerIdentity": {"principalId": "EXAMPLE"},
                           "arn": "arn:aws:s3:::lf-data"},
                "object": {"key": "data/digits/batch-1.csv", "size": 1024,
                           "eTag": "0123456789abcdef0123456789abcdef", "sequencer": "0A1B2C3D4E5F678901"},
            },
        },
    ],
}

EVENTBRIDGE_S3_OBJECT_CREATED = {
    "version": "0",
    "id": "17793124-05d4-b198-2fde-7ededc63b103",
    "detail-type": "Object Created",
    "source": "aws.s3",
    "account": "123456789012",
    "time": "2026-11-22T10:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:s3:::lf-data"],
    "detail": {
        "version": "0",
        "bucket": {"name": "lf-data"},
        "object": {"key": "data/digits/batch-1.csv", "size": 1024, "etag": "b1946ac92492d2347c6235b4d2611184",
                   "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "sequencer": "00617F08299329D189"},
        "request-id": "N4N7GDK58NMKJ12R",
        "requester": "123456789012",
        "source-ip-address": "203.0.113.7",
        "reason": "PutObject",
    },
}

EVENTBRIDGE_EC2_STATE_CHANGE = {
    "version": "0",
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "2026-11-22T10:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
    "detail": {"instance-id": "i-abcd1111", "state": "pending"},
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
    "s3_put.json": S3_PUT,
    "eventbridge_s3_object_created.json": EVENTBRIDGE_S3_OBJECT_CREATED,
    "eventbridge_ec2_state_change.json": EVENTBRIDGE_EC2_STATE_CHANGE,
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, ev in FIXTURES.items():
        (OUT / name).write_text(json.dumps(ev, indent=2) + "\n")
    print(f"wrote {len(FIXTURES)} events to {OUT}")


if __name__ == "__main__":
    main()
