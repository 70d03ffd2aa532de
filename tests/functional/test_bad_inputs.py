"""Every bad request gets a 4xx JSON answer naming the problem: never a 5xx, never a dropped connection.

The cases are sent over real HTTP to the local gateway in front of the real handler, for a tensor
model (digits) and a text model. They cover each class of input that once reached a 500 (deep
nesting, long integers, 1e309, 50,000 keys, lone surrogates), the content types, methods and sizes
API Gateway passes on, and the shapes a person gets wrong. After them, a good request still answers.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.functional.conftest import serving

ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0,
        0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]
JSON = "application/json"


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes = b""
    status: int = 422
    method: str = "POST"
    path: str = "/predict"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": JSON})
    words: tuple[str, ...] = ()
    chunked: bool = False


def j(value: object) -> bytes:
    return json.dumps(value).encode()


def predict(instances: object, **extra: object) -> bytes:
    return j({"instances": instances, **extra})


def nested(depth: int, inner: str = "0") -> bytes:
    return ("[" * depth + inner + "]" * depth).encode()


# --- classes both models share: JSON syntax and the parser's limits, the body's shape, top_k, headers,
# methods, routes and sizes
COMMON: list[Case] = [
    # JSON syntax: 400
    *[Case(f"syntax: {name}", raw, 400, words=("not valid JSON",)) for name, raw in [
        ("truncated", b'{"instances": [1, 2'), ("trailing comma", b'{"instances": [1,],}'),
        ("single quotes", b"{'instances': [1]}"), ("unquoted key", b"{instances: [1]}"),
        ("comment", b'{"instances": [1]} // hi'), ("two documents", b'{"instances": [1]}{"instances": [1]}'),
        ("trailing garbage", b'{"instances": [1]} x'), ("leading zero", b'{"instances": [01]}'),
        ("hex number", b'{"instances": [0x10]}'), ("plus sign", b'{"instances": [+1]}'),
        ("bare decimal point", b'{"instances": [.5]}'), ("dangling decimal point", b'{"instances": [1.]}'),
        ("invalid escape", b'{"instances": ["\\x41"]}'), ("unterminated string", b'{"instances": ["abc]}'),
        ("raw control character", b'{"instances": ["a\x01b"]}'),
        ("raw newline in a string", b'{"instances": ["a\nb"]}'),
        ("byte order mark", b'\xef\xbb\xbf{"instances": [1]}'), ("a lone word", b"hello"),
        ("missing colon", b'{"instances" [1]}'), ("missing value", b'{"instances": }'),
        ("short unicode escape", b'{"instances": ["\\u12"]}'), ("python None", b'{"instances": [None]}'),
        ("python True", b'{"instances": [True]}'), ("unclosed object", b'{"instances": [1]'),
        ("closing bracket only", b"]"), ("NaN", b'{"instances": [NaN]}'), ("Infinity", b'{"instances": [Infinity]}'),
        ("-Infinity", b'{"instances": [-Infinity]}'),
    ]],
    Case("syntax: empty body", b"", 400, words=("empty",)),
    Case("syntax: only whitespace", b"  \n\t ", 400, words=("empty",)),
    Case("encoding: not UTF-8", b'\xff\xfe{"instances": [1]}', 400, words=("UTF-8",)),
    Case("encoding: UTF-16", '{"instances": [1]}'.encode("utf-16"), 400, words=("UTF-8",)),
    Case("encoding: Latin-1 byte in a string", b'{"instances": ["caf\xe9"]}', 400, words=("UTF-8",)),
    # the parser's limits: 400, naming the limit
    *[Case(f"limit: nested {d} deep", nested(d), 400, words=("nested more than",)) for d in (33, 1_000, 100_000)],
    Case("limit: objects nested 2,000 deep", ('{"a":' * 2000 + "1" + "}" * 2000).encode(), 400,
         words=("nested more than",)),
    Case("limit: instances nested 40 deep", b'{"instances": ' + nested(40) + b"}", 400, words=("nested more than",)),
    *[Case(f"limit: integer of {n} digits", b'{"instances": [' + b"9" * n + b"]}", 400, words=("characters",))
      for n in (41, 310, 4_300, 5_000)],
    Case("limit: 1e309", b'{"instances": [1e309]}', 400, words=("too large",)),
    Case("limit: -1e309", b'{"instances": [-1e309]}', 400, words=("too large",)),
    Case("limit: 1e309 as top_k", b'{"instances": [1], "top_k": 1e309}', 400, words=("too large",)),
    Case("limit: a long fraction", b'{"instances": [0.' + b"1" * 60 + b"]}", 400, words=("characters",)),
    Case("limit: object of 50,000 keys", j({f"k{i}": 1 for i in range(50_000)}), 400, words=("50000 keys",)),
    Case("limit: object of 65 keys", j({f"k{i}": 1 for i in range(65)}), 400, words=("65 keys",)),
    Case("limit: duplicate key", b'{"instances": [1], "instances": [2]}', 400, words=("appears twice",)),
    Case("unicode: lone high surrogate", b'{"instances": ["\\ud800"]}', 400, words=("surrogate",)),
    Case("unicode: lone low surrogate", b'{"instances": ["a\\udfffb"]}', 400, words=("surrogate",)),
    Case("unicode: surrogate in a key", b'{"\\ud800": 1}', 400, words=("surrogate",)),
    Case("unicode: reversed pair", b'{"instances": ["\\udc00\\ud800"]}', 400, words=("surrogate",)),
    # the body's shape: 422 naming the field
    Case("shape: JSON array body", j([1, 2, 3]), words=("body",)),
    Case("shape: JSON string body", j("hello"), words=("body",)),
    Case("shape: JSON number body", b"42", words=("body",)),
    Case("shape: JSON null body", b"null", words=("body",)),
    Case("shape: JSON true body", b"true", words=("body",)),
    Case("shape: missing instances", j({}), words=("instances", "required")),
    Case("shape: misspelt instances", j({"instance": [[0] * 64]}), words=("instance",)),
    Case("shape: unknown field", j({"instances": [ZERO], "foo": 1}), words=("foo",)),
    Case("shape: instances null", predict(None), words=("instances",)),
    Case("shape: instances a number", predict(5), words=("instances",)),
    Case("shape: instances an object", predict({"a": 1}), words=("instances",)),
    Case("shape: instances a string", predict("abc"), words=("instances",)),
    Case("shape: empty batch", predict([]), words=("instances", "at least 1")),
    Case("shape: object instance", predict([{"a": 1}]), words=("instances[0]",)),
    Case("shape: null instance", predict([None]), words=("instances[0]",)),
    Case("shape: boolean instance", predict([True]), words=("instances[0]",)),
    Case("shape: number instance", predict([7]), words=("instances[0]",)),
    *[Case(f"top_k: {name}", predict([ZERO], top_k=value), words=("top_k",)) for name, value in [
        ("zero", 0), ("negative", -1), ("21", 21), ("a fraction", 1.5), ("a string", "3"), ("true", True),
        ("null", None), ("a list", [3]), ("an object", {"k": 3}), ("1e3", 1e3), ("a huge integer", 10**30),
        ("2.5e1", 25.0)]],
    # headers: 415
    *[Case(f"content type: {ct}", b'{"instances": [[0]]}', 415, headers={"Content-Type": ct},
           words=("content-type",)) for ct in [
        "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml",
        "text/json", "application/octet-stream", "application/jsonx", "image/png", "text/html; charset=utf-8",
        "application/x-ndjson"]],
    Case("content type: charset latin-1", b'{"instances": [[0]]}', 415,
         headers={"Content-Type": "application/json; charset=latin-1"}, words=("charset",)),
    Case("content type: charset utf-16", b'{"instances": [[0]]}', 415,
         headers={"Content-Type": "application/json;charset=utf-16"}, words=("charset",)),
    # methods and routes: 405 with Allow, or 404
    *[Case(f"method: {m} /predict", b"", 405, method=m, words=("/predict", "POST")) for m in
      ["GET", "PUT", "PATCH", "DELETE", "TRACE", "OPTIONS", "PURGE", "FOO"]],
    *[Case(f"method: {m} {p}", b"", 405, method=m, path=p, words=(p, "GET")) for p in ("/health", "/model")
      for m in ("POST", "PUT", "DELETE", "PATCH")],
    *[Case(f"route: {m} {p}", b"", 404, method=m, path=p, words=("no route",)) for m, p in [
        ("GET", "/nope"), ("POST", "/predict/"), ("POST", "/PREDICT"), ("POST", "/predict/extra"),
        ("GET", "/health/"), ("GET", "/models"), ("POST", "/"), ("GET", "/../etc/passwd"),
        ("GET", "/%2e%2e/etc/passwd"), ("GET", "/docs/x"), ("DELETE", "/nope"), ("GET", "/" + "a" * 2000)]],
    # sizes: the app's 1 MB limit and API Gateway's 10 MB one (413, answered, not a reset connection)
    Case("size: just over 1 MB", b'{"instances": [' + b"0," * 524_288 + b"0]}", 413, words=("limit",)),
    Case("size: 7 MB, over Lambda's 6 MB event", b'{"instances": [' + b"0," * (7 << 19) + b"0]}", 413,
         words=("Too Large",)),
    Case("size: 5 MB binary, over 6 MB once base64", b"\x00" * (5 << 20), 413,
         headers={"Content-Type": "application/octet-stream"}, words=("Too Large",)),
    Case("size: 11 MB", b'{"instances": [' + b"0," * (11 << 19) + b"0]}", 413, words=("Too Large",)),
    Case("size: 20 MB", b" " * (20 << 20), 413, words=("Too Large",)),
    Case("size: 2 MB chunked", b'{"instances": [' + b"0," * (1 << 20) + b"0]}", 413, words=("limit",),
         chunked=True),
]

DIGITS: list[Case] = [
    *[Case(f"digits: {name}", predict(instances), words=words) for name, instances, words in [
        ("63 numbers", [ZERO[:63]], ("instances[0]", "shape [63]")),
        ("65 numbers", [[*ZERO, 0]], ("instances[0]", "shape [65]")),
        ("no numbers", [[]], ("instances[0]",)),
        ("wrong nested shape", [[[1, 2], [3, 4]]], ("instances[0]", "expected [1, 8, 8]")),
        ("8x7", [[[0] * 7] * 8], ("instances[0]",)),
        ("2x8x8", [[[[0] * 8] * 8] * 2], ("instances[0]",)),
        ("1x1x64", [[[ZERO]]], ("instances[0]",)),
        ("ragged rows", [[[0] * 8] * 7 + [[0] * 7]], ("instances[0]",)),
        ("a row too deep", [[[0] * 8] * 7 + [[[0]] * 8]], ("instances[0]",)),
        ("a string", ["abc"], ("instances[0]", "got str")),
        ("strings of digits", [["1"] * 64], ("instances[0]", "not a number")),
        ("booleans", [[True] * 64], ("instances[0]", "not a number")),
        ("one boolean among numbers", [[*ZERO[:63], False]], ("instances[0]",)),
        ("nulls", [[None] * 64], ("instances[0]", "not a number")),
        ("objects", [[{}] * 64], ("instances[0]",)),
        ("above the maximum", [[17] * 64], ("instances[0]", "above the maximum 16")),
        ("below the minimum", [[-1] * 64], ("instances[0]", "below the minimum 0")),
        ("1e30", [[1e30] * 64], ("instances[0]", "above the maximum")),
        ("a tiny negative", [[-1e-300] * 64], ("instances[0]", "below the minimum")),
        ("second instance bad", [ZERO, ZERO[:10]], ("instances[1]",)),
        ("last of many bad", [ZERO] * 9 + [[0] * 3], ("instances[9]",)),
        ("oversized batch", [ZERO] * 65, ("instances", "exceeds the limit of 64")),
        ("text in a tensor list", [[*ZERO[:63], "x"]], ("instances[0]",)),
    ]],
    Case("digits: a huge integer pixel", b'{"instances": [[' + b"1" * 39 + b"," + b"0," * 62 + b"0]]}",
         words=("instances[0]",)),
]

TEXT: list[Case] = [
    *[Case(f"text: {name}", predict(instances), words=words) for name, instances, words in [
        ("a number", [5], ("instances[0]",)),
        ("a list of numbers", [[0] * 64], ("instances[0]", "string")),
        ("a nested list of strings", [["hello"]], ("instances[0]", "string")),
        ("an object", [{"text": "hi"}], ("instances[0]",)),
        ("a null among strings", ["hi", None], ("instances[1]",)),
        ("a boolean", [False], ("instances[0]",)),
        ("empty string", [""], ("instances[0]", "empty")),
        ("spaces", ["   "], ("instances[0]", "whitespace")),
        ("tabs and newlines", ["\t\n\r"], ("instances[0]", "whitespace")),
        ("no-break space", ["\u00a0"], ("instances[0]", "whitespace")),
        ("em space", ["\u2003\u2003"], ("instances[0]", "whitespace")),
        ("ideographic space", ["\u3000"], ("instances[0]", "whitespace")),
        ("second instance empty", ["fine", ""], ("instances[1]",)),
        ("too long", ["a" * 2001], ("instances[0]", "exceeds the limit")),
        ("far too long", ["word " * 100_000], ("instances[0]",)),
        ("oversized batch", ["hi"] * 33, ("instances", "batch of 33 exceeds the limit of 32")),
        ("mixed text and numbers", ["hi", 3], ("instances[1]",)),
    ]],
    Case("text: a string with a lone surrogate and text", b'{"instances": ["ok \\udbff then"]}', 400,
         words=("surrogate",)),
]


class Client:
    """One connection per request (a dropped connection is an error, not a retry)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    def send(self, case: Case) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            headers = dict(case.headers)
            if case.chunked:
                conn.putrequest(case.method, case.path, skip_accept_encoding=True)
                for key, value in {**headers, "Transfer-Encoding": "chunked"}.items():
                    conn.putheader(key, value)
                conn.endheaders()
                for start in range(0, len(case.body), 65536):
                    piece = case.body[start:start + 65536]
                    conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                conn.send(b"0\r\n\r\n")
            else:
                conn.request(case.method, case.path, body=case.body or None,
                             headers={**headers, "Content-Length": str(len(case.body))})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()


def good(kind: str) -> Case:
    body = predict([ZERO]) if kind == "digits" else predict(["where is my parcel"])
    return Case("good", body, 200)


def check(client: Client, case: Case) -> None:
    status, headers, raw = client.send(case)
    assert status == case.status, f"{case.name}: {status} {raw[:300]!r}"
    assert headers.get("content-type", "").startswith("application/json"), f"{case.name}: {headers}"
    if case.method == "HEAD":
        return
    body = json.loads(raw)
    assert isinstance(body, dict) and body.get("message"), f"{case.name}: {raw[:300]!r}"
    if status != 413 or "error" in body:  # API Gateway's own 413 is {"message": ...}
        assert body.get("error"), f"{case.name}: {raw[:300]!r}"
    if status == 405:
        assert case.words[-1] in headers.get("allow", ""), f"{case.name}: Allow is {headers.get('allow')!r}"
    text = json.dumps(body)
    for word in case.words:
        assert word in text, f"{case.name}: {word!r} not in {text[:300]}"


@pytest.fixture(scope="module")
def digits_client(digits_int8: Path) -> Iterator[Client]:
    for api in serving(digits_int8):
        yield Client(api.url)


@pytest.fixture
def text_client(text_int8: Path) -> Iterator[Client]:
    for api in serving(text_int8):
        yield Client(api.url)


def test_the_suite_is_large_and_every_case_distinct() -> None:
    cases = [*COMMON, *DIGITS, *TEXT]
    assert len({c.name for c in cases}) == len(cases)
    assert len({(c.method, c.path, tuple(sorted(c.headers.items())), c.body, c.chunked) for c in cases}) == len(cases)
    assert len(cases) >= 150, len(cases)


# (the in-process handler serves one model per process: the digits tests run, then the text ones)
@pytest.mark.parametrize("case", [*COMMON, *DIGITS], ids=lambda c: c.name)
def test_digits_bad_input_gets_a_4xx_json_answer(digits_client: Client, case: Case) -> None:
    check(digits_client, case)


def test_a_good_digits_request_still_answers_after_them(digits_client: Client) -> None:
    status, _, raw = digits_client.send(good("digits"))
    assert status == 200, raw[:300]
    assert [p["label"] for p in json.loads(raw)["predictions"]] == ["0"]


@pytest.mark.parametrize("path", ["/health", "/model", "/nope", "/predict"])
def test_head_is_get_without_a_body(digits_client: Client, path: str) -> None:
    get_status, get_headers, _ = digits_client.send(Case("get", method="GET", path=path, status=0))
    status, headers, body = digits_client.send(Case("head", method="HEAD", path=path, status=0))
    assert (status, body) == (get_status, b"")
    assert headers["content-type"] == get_headers["content-type"] == "application/json"
    if path == "/predict":
        assert status == 405 and headers["allow"] == "POST"


def test_text_bad_input_gets_a_4xx_json_answer_and_a_good_request_still_answers(text_client: Client) -> None:
    """One test for all the text cases: the text model is served only while it runs."""
    failures = []
    for case in [*COMMON, *TEXT]:
        try:
            check(text_client, case)
        except AssertionError as exc:
            failures.append(str(exc)[:300])
    assert failures == [], "\n".join(failures)
    status, _, raw = text_client.send(good("text"))
    assert status == 200, raw[:300]
    assert len(json.loads(raw)["predictions"]) == 1
