"""A local API Gateway (HTTP API, payload format 2.0): `sam local start-api` without Docker.

HTTP requests become payload-2.0 events (headers, cookies, query string, path, base64
bodies, requestContext with method/path/sourceIp and a requestId); the function's answer
becomes the HTTP response, as API Gateway would build it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Invoker = Callable[[dict[str, Any]], dict[str, Any]]
Authorizer = Callable[[str, str, dict[str, str], bytes], str | None]  # returns an error message or None

API_GATEWAY_MAX_BODY = 10 * 1024 * 1024  # HTTP APIs refuse larger payloads
# A synchronous Lambda invoke takes at most 6 MiB of event JSON (RequestEntityTooLargeException): a body
# under API Gateway's 10 MB can still be too large for the function once it is in the event (base64
# adds a third). Reported answers from API Gateway are a 413; this gateway answers that way.
LAMBDA_MAX_EVENT = 6 * 1024 * 1024
_DRAIN_CAP = 256 * 1024 * 1024  # read at most this much of an oversized body before answering 413
_TEXT_TYPES = ("application/json", "text/", "application/xml", "application/javascript", "+json")


def http_event(method: str, raw_path: str, headers: dict[str, str], body: bytes, *, source_ip: str = "127.0.0.1",
               stage: str = "$default", request_id: str | None = None, api_id: str = "local",
               host: str = "127.0.0.1") -> dict[str, Any]:
    """The payload-2.0 event API Gateway would send for this request."""
    parts = urlsplit(raw_path)
    lower = {k.lower(): v for k, v in headers.items()}
    cookies = [c.strip() for c in lower.pop("cookie", "").split(";") if c.strip()]
    content_type = lower.get("content-type", "")
    is_text = any(t in content_type for t in _TEXT_TYPES) or not content_type
    try:
        text_body = body.decode("utf-8") if is_text else None
    except UnicodeDecodeError:
        text_body = None
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": lower,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": api_id,
            "domainName": lower.get("host", host),
            "domainPrefix": lower.get("host", host).split(".")[0],
            "http": {"method": method, "path": parts.path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": lower.get("user-agent", "")},
            "requestId": request_id or base64.b32encode(uuid.uuid4().bytes[:10]).decode().rstrip("="),
            "routeKey": "$default",
            "stage": stage,
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if parts.query:
        params: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value  # API Gateway joins repeats
        event["queryStringParameters"] = params
    if body:
        if text_body is not None:
            event["body"] = text_body
        else:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """API Gateway's reading of a function result (payload 2.0), including its inference of a bare value."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return 200, [("Content-Type", "application/json")], json.dumps(result).encode()
    status = int(result["statusCode"])
    headers = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((key, str(v)) for v in values)
    headers.extend(("Set-Cookie", c) for c in result.get("cookies") or [])
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
    return status, headers, raw


def _json(status: int, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "application/json")], json.dumps({"message": message}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body must not wait for the client's delayed ACK
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.access_log:
            self.server.access_log(f"{self.address_string()} {format % args}")

    def __getattr__(self, name: str) -> Any:
        """Every method reaches the function, as with a `$default` route (TRACE, or a made-up one, too):
        the app answers 404 or 405 in its own JSON, never the standard library's HTML 501."""
        if name.startswith("do_") and name[3:].isalpha():
            return self._handle
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A request the server cannot read (a bad request line, headers too long) gets JSON, not HTML."""
        self._send(*_json(code, message or self.responses.get(code, ("Error",))[0]), close=True)

    def _body(self) -> bytes | None:
        """The request body, or None when it is over API Gateway's limit. An oversized body is read to its
        end (up to a cap) before the 413, so the client sees the answer instead of a reset connection."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0].strip() or b"0", 16)
                if size < 0:
                    raise ValueError("negative chunk size")
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                data = self.rfile.read(size)
                self.rfile.readline(3)
                if total <= API_GATEWAY_MAX_BODY:
                    chunks.append(data)
                elif total > _DRAIN_CAP:
                    return None
            return b"".join(chunks) if total <= API_GATEWAY_MAX_BODY else None
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length <= API_GATEWAY_MAX_BODY:
            return self.rfile.read(length) if length else b""
        left = min(length, _DRAIN_CAP)
        while left > 0:
            got = self.rfile.read(min(left, 1 << 20))
            if not got:
                break
            left -= len(got)
        return None

    def _handle(self) -> None:
        started = time.perf_counter()
        try:
            body = self._body()
        except ValueError:
            self._send(*_json(400, "Bad Request"), close=True)
            return
        if body is None:
            self._send(*_json(413, "Request Entity Too Large"), close=True)
            return
        headers = {k: v for k, v in self.headers.items()}
        if self.server.authorizer:
            denied = self.server.authorizer(self.command, self.path, headers, body)
            if denied:
                self._send(*_json(403 if "signature" in denied.lower() else 401, denied))
                return
        host, port = self.server.server_address[:2]
        event = http_event(self.command, self.path, headers, body, source_ip=str(self.client_address[0]),
                           host=f"{host.decode() if isinstance(host, bytes) else host}:{port}")
        if len(body) > LAMBDA_MAX_EVENT // 2 and len(json.dumps(event).encode()) > LAMBDA_MAX_EVENT:
            self._send(*_json(413, "Request Entity Too Large"))
            return
        try:
            result = self.server.invoker(event)
            status, out_headers, payload = http_response(result)
        except Exception as exc:
            if self.server.access_log:
                self.server.access_log(f"function error: {type(exc).__name__}: {exc}")
            status, out_headers, payload = _json(500, "Internal Server Error")
        out_headers.append(("apigw-requestid", event["requestContext"]["requestId"]))
        out_headers.append(("x-lambdaforge-gateway-ms", f"{(time.perf_counter() - started) * 1000:.3f}"))
        self._send(status, out_headers, payload)

    def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes, close: bool = False) -> None:
        self.send_response(status)  # the standard reason phrase for the code
        for key, value in headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)



class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 overflows when a few dozen clients connect at once, and the
    # kernel then resets connections it had half accepted; API Gateway never does that to a client
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], invoker: Invoker, authorizer: Authorizer | None,
                 access_log: Callable[[str], None] | None) -> None:
        super().__init__(address, _Handler)
        self.invoker = invoker
        self.authorizer = authorizer
        self.access_log = access_log


class LocalGateway:
    """Serve `invoker` on 127.0.0.1 (loopback only: this is a development server)."""

    def __init__(self, invoker: Invoker, *, host: str = "127.0.0.1", port: int = 3000,
                 authorizer: Authorizer | None = None, access_log: Callable[[str], None] | None = None) -> None:
        self._server = _Server((host, port), invoker, authorizer, access_log)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}"

    def start(self) -> LocalGateway:
        self._thread = threading.Thread(target=self._server.serve_forever, name="lambdaforge-gateway", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
