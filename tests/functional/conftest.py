"""Fixtures for the serving tests: the real inference handler behind the local gateway."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from lambdaforge import runtime
from lambdaforge.local.gateway import LocalGateway
from lambdaforge.local.inprocess import InProcessFunction

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR",
         "POWERTOOLS_SERVICE_NAME": "inference", "POWERTOOLS_METRICS_NAMESPACE": "lambdaforge"}


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def post(self, path: str, body: object = None, *, raw: bytes | None = None,
             content_type: str | None = "application/json") -> requests.Response:
        headers = {"content-type": content_type} if content_type else {}
        data = raw if raw is not None else (None if body is None else __import__("json").dumps(body).encode())
        return self.http.post(self.url + path, data=data, headers=headers, timeout=30)

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.url + path, timeout=30)


def start_api(model: Path) -> tuple[LocalGateway, Api]:
    runtime.reset()
    os.environ["MODEL_URI"] = str(model)
    function = InProcessFunction(ROOT / "functions" / "inference", env=QUIET)
    gateway = LocalGateway(function, port=0).start()
    return gateway, Api(gateway.url)


def serving(model: Path) -> Iterator[Api]:
    gateway, api = start_api(model)
    yield api
    gateway.stop()
    runtime.reset()


@pytest.fixture(scope="module")
def digits_api(digits_int8: Path) -> Iterator[Api]:
    yield from serving(digits_int8)


@pytest.fixture(scope="module")
def text_api(text_int8: Path) -> Iterator[Api]:
    yield from serving(text_int8)
