"""Authorizers for the local gateway, as the template's route asks for them.

- AWS_IAM: a real SigV4 check (botocore's signer recomputes the signature over the headers the
  client signed, with the local credentials), so `lambdaforge invoke` is tested as it runs in AWS.
- JWT: issuer, audience and expiry are checked; the signature is NOT verified locally (there is
  no identity provider to fetch keys from). Local development only.
"""

from __future__ import annotations

import base64
import hmac
import json
import time

from lambdaforge.local.gateway import Authorizer


def sigv4_authorizer(access_key: str, secret_key: str, region: str, service: str = "execute-api",
                     max_skew_s: int = 300) -> Authorizer:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    credentials = Credentials(access_key, secret_key)

    def check(method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:  # noqa: PLR0911
        lower = {k.lower(): v for k, v in headers.items()}
        auth = lower.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return "Missing Authentication Token (this API uses IAM auth: sign requests with SigV4)"
        try:
            fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(","))
            scope = fields["Credential"].split("/")
            signed = fields["SignedHeaders"].split(";")
            given = fields["Signature"]
        except (KeyError, ValueError):
            return "The request signature is malformed"
        if scope[0] != access_key:
            return "The security token included in the request is invalid"
        if scope[2] != region or scope[3] != service:
            return f"Credential should be scoped to region {region} and service {service}"
        amz_date = lower.get("x-amz-date", "")
        try:
            signed_at = time.mktime(time.strptime(amz_date, "%Y%m%dT%H%M%SZ")) - time.timezone
        except ValueError:
            return "The request signature is missing X-Amz-Date"
        if abs(time.time() - signed_at) > max_skew_s:
            return "Signature expired: the request time is too far from the server time"
        url = f"http://{lower.get('host', 'localhost')}{path}"
        request = AWSRequest(method=method, url=url, data=body, headers={h: lower[h] for h in signed if h in lower})
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(credentials, service, region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, given):
            return "The request signature we calculated does not match the signature you provided"
        return None

    return check


def jwt_authorizer(issuer: str | None, audience: list[str]) -> Authorizer:
    def check(method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
        lower = {k.lower(): v for k, v in headers.items()}
        token = lower.get("authorization", "")
        if token.lower().startswith("bearer "):
            token = token[7:]
        parts = token.split(".")
        if len(parts) != 3:
            return "Unauthorized: a JWT bearer token is required"
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (ValueError, UnicodeDecodeError):
            return "Unauthorized: the token is not a JWT"
        if issuer and claims.get("iss") != issuer:
            return "Unauthorized: wrong issuer"
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if audience and not set(auds) & set(audience):
            return "Unauthorized: wrong audience"
        if "exp" in claims and float(claims["exp"]) < time.time():
            return "Unauthorized: the token has expired"
        return None

    return check
