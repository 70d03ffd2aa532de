"""The smoke check: before any traffic moves, the new version answers one request built from its own model.

The request is what `Predictor.sample_request()` builds (the first held-out row of the model's eval
file; for text models that row's token ids decoded with the model's own vocabulary, within its
length limit), read from the model directory in S3 and checked against the
manifest's sha256. The promote function runs on python3.12 + boto3 + the Powertools layer, with no
numpy, so the `.npy` member of the eval `.npz` is read here with the standard library.

It is sent as API Gateway (payload 2.0) sends `POST /predict`, to the published version itself (its
qualified ARN), so it exercises the version that would take traffic, with its pinned MODEL_URI. Any
answer but a well-formed prediction from that very model refuses the rollout.
"""

from __future__ import annotations

import ast
import hashlib
import io
import itertools
import json
import math
import struct
import time
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lambdaforge.artifact.manifest import MANIFEST_NAME, Manifest
from lambdaforge.pipeline.errors import SmokeCheckFailedError

PATH = "/predict"
USER_AGENT = "lambdaforge-smoke-check"
MAX_SAMPLE_BYTES = 64 << 20  # an eval file beyond this is not read into the promote function's memory
# numpy dtype codes (without the byte order) -> struct codes; the dtypes a manifest allows, and their kin
_STRUCT = {"f2": "e", "f4": "f", "f8": "d", "i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I",
           "i8": "q", "u8": "Q", "b1": "?"}


@dataclass(frozen=True)
class SmokeSample:
    """The request body and what a right answer must satisfy."""

    body: dict[str, Any]
    labels: tuple[str, ...]

    @property
    def instances(self) -> int:
        return len(self.body["instances"])


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise SmokeCheckFailedError(f"model URI {uri!r} is not an s3:// prefix")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.rstrip("/") + "/"


def _read(s3: Any, bucket: str, key: str) -> bytes:
    from botocore.exceptions import ClientError

    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
        if int(obj.get("ContentLength", 0)) > MAX_SAMPLE_BYTES:
            raise SmokeCheckFailedError(f"s3://{bucket}/{key} is larger than {MAX_SAMPLE_BYTES} bytes")
        data: bytes = obj["Body"].read()
    except ClientError as exc:
        raise SmokeCheckFailedError(f"s3://{bucket}/{key}: {exc.response['Error']['Message']}") from exc
    return data


def _verified(s3: Any, bucket: str, prefix: str, manifest: Manifest, rel: str) -> bytes:
    """A file of the model directory, refused unless its sha256 is the manifest's."""
    data = _read(s3, bucket, prefix + rel)
    expected = manifest.files.get(rel)
    if expected is None or hashlib.sha256(data).hexdigest() != expected:
        raise SmokeCheckFailedError(f"s3://{bucket}/{prefix}{rel} does not match the sha256 its manifest lists")
    return data


def first_row(npy: bytes) -> list[int | float]:
    """The first row of a `.npy` array, flattened in C order, as `Predictor.sample_request` writes it."""
    if npy[:6] != b"\x93NUMPY" or len(npy) < 10:
        raise SmokeCheckFailedError("the eval file's member is not a .npy array")
    if npy[6] == 1:
        (size,), start = struct.unpack_from("<H", npy, 8), 10
    else:
        (size,), start = struct.unpack_from("<I", npy, 8), 12
    try:
        header = ast.literal_eval(npy[start:start + size].decode("latin1"))
        descr, fortran, shape = str(header["descr"]), bool(header["fortran_order"]), tuple(header["shape"])
        code = ("<" if descr[0] in "<|=" else ">") + _STRUCT[descr[1:]]
    except (ValueError, SyntaxError, KeyError, TypeError, IndexError) as exc:
        raise SmokeCheckFailedError(f"the eval file's .npy header is not one this check reads: {exc}") from exc
    if not shape or shape[0] < 1:
        raise SmokeCheckFailedError("the eval file holds no rows")
    width = struct.calcsize(code)
    body = npy[start + size:]
    item = shape[1:]
    if fortran:  # column-major: element [0, j1, .., jk] lies at sum(j_i * prod(shape[:i]))
        strides = [math.prod(shape[:i]) for i in range(1, len(shape))]
        offsets = [sum(j * s for j, s in zip(index, strides, strict=True))
                   for index in itertools.product(*(range(d) for d in item))]
    else:
        offsets = list(range(math.prod(item)))
    try:
        values = [struct.unpack_from(code, body, o * width)[0] for o in offsets]
    except struct.error as exc:
        raise SmokeCheckFailedError(f"the eval file's array is shorter than its header says: {exc}") from exc
    return [int(v) if float(v).is_integer() else round(float(v), 4) for v in values]


def _npz_member(npz: bytes, name: str) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(npz)) as zf:
            return zf.read(f"{name}.npy")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise SmokeCheckFailedError(f"the eval file has no array {name!r}: {exc}") from exc


def _decode(ids: list[int | float], tokenizer: dict[str, Any]) -> str:
    """Text back from token ids with the model's own tokenizer.json vocabulary (no `tokenizers` here):
    special tokens dropped, WordPiece continuations ("##") joined to the word before."""
    model = tokenizer.get("model") or {}
    vocab = {int(i): str(t) for t, i in (model.get("vocab") or {}).items()} if isinstance(model.get("vocab"), dict) \
        else {}
    special = {str(t["content"]) for t in tokenizer.get("added_tokens") or [] if t.get("special")}
    prefix = str(model.get("continuing_subword_prefix") or "##")
    words: list[str] = []
    for i in ids:
        token = vocab.get(int(i))
        if token is None or token in special:
            continue
        if words and token.startswith(prefix):
            words[-1] += token[len(prefix):]
        else:
            words.append(token)
    return " ".join(words)


def sample(s3: Any, model_uri: str) -> SmokeSample:
    """The model's own sample request, from its directory in S3 (verified against its manifest)."""
    bucket, prefix = _split(model_uri)
    try:
        manifest = Manifest.model_validate_json(_read(s3, bucket, prefix + MANIFEST_NAME))
    except ValueError as exc:
        raise SmokeCheckFailedError(f"{model_uri}: the manifest cannot be read: {exc}") from exc
    npz = _verified(s3, bucket, prefix, manifest, manifest.eval_file)
    row = first_row(_npz_member(npz, manifest.inputs[0].name))
    if manifest.preprocessing.kind == "text" and manifest.preprocessing.tokenizer:
        tokenizer = json.loads(_verified(s3, bucket, prefix, manifest, manifest.preprocessing.tokenizer))
        text = _decode(row, tokenizer).strip()
        limit = manifest.limits.max_text_chars
        return SmokeSample(body={"instances": [(text[:limit] if limit else text) or "hello"]}, labels=manifest.labels)
    return SmokeSample(body={"instances": [row]}, labels=manifest.labels)


def event(body: dict[str, Any], account: str = "000000000000") -> dict[str, Any]:
    """`POST /predict` as API Gateway's HTTP API hands it to the function (payload format 2.0)."""
    now = datetime.now(UTC)
    headers = {"content-type": "application/json", "user-agent": USER_AGENT, "host": "smoke-check.internal"}
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": PATH, "rawQueryString": "", "headers": headers,
        "requestContext": {
            "accountId": account, "apiId": "smoke-check", "domainName": headers["host"], "domainPrefix": "smoke-check",
            "http": {"method": "POST", "path": PATH, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": USER_AGENT},
            "requestId": uuid.uuid4().hex, "routeKey": "$default", "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": int(now.timestamp() * 1000),
        },
        "body": json.dumps(body), "isBase64Encoded": False,
    }


def judge(answer: Any, smoke: SmokeSample, model_version: str) -> dict[str, Any]:
    """The parsed body of a right answer; SmokeCheckFailedError naming what is wrong otherwise."""
    if not isinstance(answer, dict) or "statusCode" not in answer:
        raise SmokeCheckFailedError(f"the answer is not an HTTP API proxy response: {str(answer)[:300]}")
    status, text = answer.get("statusCode"), answer.get("body") or ""
    if status != 200:
        raise SmokeCheckFailedError(f"POST {PATH} with the model's own sample answered {status}: {str(text)[:300]}")
    try:
        body = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise SmokeCheckFailedError(f"the answer's body is not JSON: {str(text)[:300]}") from exc
    predictions = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(predictions, list) or len(predictions) != smoke.instances:
        raise SmokeCheckFailedError(f"{smoke.instances} instance(s) sent, the answer holds "
                                    f"{len(predictions) if isinstance(predictions, list) else 'no'} prediction(s)")
    for p in predictions:
        label = p.get("label") if isinstance(p, dict) else None
        if label not in smoke.labels:
            raise SmokeCheckFailedError(f"predicted label {label!r} is not one of the model's labels {smoke.labels}")
    served = str((body.get("model") or {}).get("version", ""))
    if served != model_version:
        raise SmokeCheckFailedError(f"the answer comes from model {served!r}, not {model_version!r} being promoted")
    return dict(body)


def check(lam: Any, s3: Any, function_arn: str, model_uri: str, model_version: str) -> dict[str, Any]:
    """Send the model's sample to `function_arn` (a qualified version ARN) and judge the answer."""
    smoke = sample(s3, model_uri)
    account = function_arn.split(":")[4] if function_arn.count(":") >= 6 else "000000000000"
    started = time.perf_counter()
    out = lam.invoke(FunctionName=function_arn, InvocationType="RequestResponse",
                     Payload=json.dumps(event(smoke.body, account)).encode())
    raw = out["Payload"].read()
    if out.get("FunctionError"):
        raise SmokeCheckFailedError(f"{function_arn} failed ({out['FunctionError']}): {raw[:300]!r}")
    try:
        answer = json.loads(raw)
    except ValueError as exc:
        raise SmokeCheckFailedError(f"{function_arn} returned no JSON: {raw[:300]!r}") from exc
    body = judge(answer, smoke, model_version)
    return {"status": 200, "instances": smoke.instances, "label": body["predictions"][0]["label"],
            "seconds": round(time.perf_counter() - started, 3)}
