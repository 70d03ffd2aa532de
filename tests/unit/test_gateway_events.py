"""The local gateway builds payload-2.0 events and reads answers the way API Gateway does."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import requests

from lambdaforge.local.gateway import LocalGateway, http_event, http_response


def test_event_has_headers_cookies_query_path_and_request_context() -> None:
    ev = http_event("POST", "/predict/x?a=1&b=two&a=3", {"Content-Type": "application/json", "Cookie": "s=1; t=2",
                                                         "X-Trace": "abc", "Host": "h:3000"}, b'{"k": 1}',
                    source_ip="127.0.0.9")
    assert ev["version"] == "2.0" and ev["routeKey"] == "$default"
    assert ev["rawPath"] == "/predict/x" and ev["rawQueryString"] == "a=1&b=two&a=3"
    assert ev["queryStringParameters"] == {"a": "1,3", "b": "two"}
    assert ev["cookies"] == ["s=1", "t=2"] and "cookie" not in ev["headers"]
    assert ev["headers"]["x-trace"] == "abc" and ev["headers"]["content-type"] == "application/json"
    ctx = ev["requestContext"]
    assert ctx["http"] == {"method": "POST", "path": "/predict/x", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.9",
                           "userAgent": ""}
    assert ctx["requestId"] and ctx["stage"] == "$default" and ctx["domainName"] == "h:3000"
    assert ev["body"] == '{"k": 1}' and ev["isBase64Encoded"] is False


def test_binary_bodies_are_base64_encoded() -> None:
    ev = http_event("POST", "/upload", {"content-type": "application/octet-stream"}, b"\x00\xff\x10")
    assert ev["isBase64Encoded"] is True and base64.b64decode(ev["body"]) == b"\x00\xff\x10"
    ev = http_event("POST", "/x", {"content-type": "application/json"}, b"\xff\xfe")
    assert ev["isBase64Encoded"] is True  # not UTF-8: API Gateway would base64 it too
    assert "body" not in http_event("GET", "/x", {}, b"")


def test_answers_become_http_responses() -> None:
    status, headers, body = http_response({"statusCode": 201, "headers": {"X-A": "1"}, "cookies": ["c=1", "d=2"],
                                           "body": base64.b64encode(b"bin").decode(), "isBase64Encoded": True})
    assert (status, body) == (201, b"bin")
    assert ("X-A", "1") in headers and ("Set-Cookie", "c=1") in headers and ("Set-Cookie", "d=2") in headers
    status, headers, body = http_response({"hello": "world"})  # payload 2.0 infers a bare value as 200 JSON
    assert status == 200 and json.loads(body) == {"hello": "world"}


def test_gateway_round_trip_and_function_errors() -> None:
    seen: list[dict[str, Any]] = []

    def invoker(event: dict[str, Any]) -> dict[str, Any]:
        seen.append(event)
        if event["rawPath"] == "/boom":
            raise RuntimeError("handler crashed")
        return {"statusCode": 200, "headers": {"content-type": "application/json"},
                "body": json.dumps({"path": event["rawPath"], "q": event.get("queryStringParameters")})}

    gw = LocalGateway(invoker, port=0).start()
    try:
        r = requests.get(f"{gw.url}/hello?x=1", timeout=60, cookies={"k": "v"})
        assert r.status_code == 200 and r.json() == {"path": "/hello", "q": {"x": "1"}}
        assert r.headers["apigw-requestid"]
        assert seen[-1]["cookies"] == ["k=v"]
        r = requests.get(f"{gw.url}/boom", timeout=60)
        assert r.status_code == 500 and r.json() == {"message": "Internal Server Error"}
        big = b"x" * (10 * 1024 * 1024 + 1)
        r = requests.post(f"{gw.url}/x", data=big, timeout=30)
        assert r.status_code == 413
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(requests.get(f"{gw.url}/c", timeout=60).status_code))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * 8
    finally:
        gw.stop()


def test_the_inference_prechecks_read_the_events_the_gateway_builds() -> None:
    from lambdaforge.runtime.http import body_size, precheck

    good = http_event("POST", "/predict", {"Content-Type": "application/json"}, b'{"instances": [[0]]}')
    assert precheck(good, 1 << 20) is None
    too_big = precheck(good, 5)
    assert too_big is not None and (too_big.status, too_big.code) == (413, "payload_too_large")
    binary = http_event("POST", "/predict", {"content-type": "application/json"}, b"\xff\xfe" + b"x" * 298)
    assert binary["isBase64Encoded"] is True and body_size(binary) == 300  # the decoded size, not the base64 one
    refused = precheck(binary, 1 << 20)
    assert refused is not None and (refused.status, refused.code) == (400, "malformed_body")
    plain = http_event("POST", "/predict", {"content-type": "text/plain"}, b'{"instances": [[0]]}')
    refused = precheck(plain, 1 << 20)
    assert refused is not None and (refused.status, refused.code) == (415, "unsupported_media_type")
    assert precheck(http_event("GET", "/health", {"content-type": "text/plain"}, b""), 1 << 20) is None


def test_a_precheck_refusal_is_an_answer_the_gateway_reads_as_json() -> None:
    from lambdaforge.runtime.http import precheck

    refused = precheck(http_event("POST", "/predict", {"content-type": "text/plain"}, b"hi"), 1 << 20)
    assert refused is not None
    status, headers, body = http_response(refused.proxy())
    assert status == 415 and ("Content-Type", "application/json") in headers
    assert json.loads(body) == {"error": "unsupported_media_type",
                                "message": "content-type must be application/json, not text/plain"}
