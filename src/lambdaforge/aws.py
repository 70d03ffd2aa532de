"""boto3 clients made one way everywhere: region from the usual chain, endpoint from AWS_ENDPOINT_URL.

boto3 itself honours AWS_ENDPOINT_URL, which is how the handlers reach the embedded local
cloud unchanged; this module only adds lazy import and a retry config.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from lambdaforge import envvars


@cache
def _config() -> Any:
    from botocore.config import Config

    return Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=70)


def client(service: str, region: str | None = None) -> Any:
    import boto3

    return boto3.client(service, region_name=envvars.region(region), config=_config())


def resource(service: str, region: str | None = None) -> Any:
    import boto3

    return boto3.resource(service, region_name=envvars.region(region), config=_config())


def object_exists(s3: Any, bucket: str, key: str) -> bool:
    """HeadObject, with "not found" as False and every other error raised."""
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def split_s3_uri(uri: str) -> tuple[str, str]:
    from lambdaforge.errors import S3TransferError

    if not uri.startswith("s3://"):
        raise S3TransferError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise S3TransferError(f"{uri!r} has no bucket")
    return bucket, key
