"""Calling the deployed API: SigV4 when it uses IAM auth, a bearer token for JWT, nothing for NONE."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lambdaforge.cloud.errors import CloudError

AUTH_MODES = ("IAM", "JWT", "NONE")


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    body: bytes
    headers: dict[str, str]
    latency_ms: float

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def sign_sigv4(method: str, url: str, body: bytes, headers: dict[str, str], region: str,
               credentials: Any) -> dict[str, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(credentials, "execute-api", region).add_auth(request)
    return dict(request.headers.items())


def call_api(url: str, body: bytes | None, *, method: str = "POST", auth: str = "NONE", region: str | None = None,
             token: str | None = None, credentials: Any = None, timeout: float = 60.0) -> ApiAnswer:
    if auth not in AUTH_MODES:
        raise CloudError(f"auth must be one of {', '.join(AUTH_MODES)}, not {auth!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CloudError(f"{url!r} is not an http(s) URL")
    headers = {"content-type": "application/json", "host": parts.netloc}
    payload = body or b""
    if auth == "IAM":
        if credentials is None:
            import boto3

            credentials = boto3.Session().get_credentials()
        if credentials is None:
            raise CloudError("the API uses IAM auth but no AWS credentials were found",
                             hint="run `aws configure` or set AWS_PROFILE")
        if not region:
            raise CloudError("the API uses IAM auth: a region is needed to sign", hint="pass --region")
        headers = sign_sigv4(method, url, payload, headers, region, credentials.get_frozen_credentials()
                             if hasattr(credentials, "get_frozen_credentials") else credentials)
    elif auth == "JWT":
        if not token:
            raise CloudError("the API uses JWT auth: pass --token or set LAMBDAFORGE_API_TOKEN")
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=payload if method in ("POST", "PUT", "PATCH") else None,  # noqa: S310
                                     headers=headers, method=method)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - http(s) checked above
            data = resp.read()
            status, out_headers = resp.status, dict(resp.headers.items())
    except urllib.error.HTTPError as exc:
        data, status, out_headers = exc.read(), exc.code, dict(exc.headers.items())
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise CloudError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from exc
    return ApiAnswer(status=status, body=data, headers=out_headers,
                     latency_ms=(time.perf_counter() - started) * 1000)
