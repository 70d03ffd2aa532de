"""The API's OpenAPI document describes the served model exactly, and schemathesis finds nothing.

schemathesis runs against `lambdaforge serve` (the real CLI, the local gateway, the real handler)
with every check and every phase: it sends what the document says is valid and expects a 2xx, sends
what it says is invalid and expects a 4xx, tries undeclared methods, and checks every answer
against the declared status codes, content types and schemas.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest
import requests

from lambdaforge.local.sagemaker_executor import free_port
from tests.functional.conftest import QUIET

ROOT = Path(__file__).resolve().parents[2]
ST = Path(sys.executable).parent / "st"
CHECKS = "all"
PHASES = "examples,coverage,fuzzing,stateful"


def serve(model: Path, log: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **QUIET}
    env.pop("MODEL_URI", None)
    with log.open("w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "lambdaforge"), "serve", "--model", str(model),
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"lambdaforge serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def digits_url(digits_int8: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve(digits_int8, tmp_path_factory.mktemp("serve") / "digits.log")


@pytest.fixture(scope="module")
def text_url(text_int8: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve(text_int8, tmp_path_factory.mktemp("serve") / "text.log")


def schemathesis(url: str, report: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ST), "run", f"{url}/openapi.json", "--checks", CHECKS, "--phases", PHASES, "--max-examples", "60",
         "--seed", "20261202", "--workers", "1", "--request-timeout", "30", "--report", "junit",
         "--report-junit-path", str(report), "--no-color"],
        capture_output=True, text=True, timeout=900, check=False, cwd=report.parent,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""})


@pytest.mark.parametrize("kind", ["digits", "text"])
def test_schemathesis_finds_nothing(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    run = schemathesis(url, tmp_path / "junit.xml")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    for phase in ("Examples", "Coverage", "Fuzzing"):
        assert re.search(rf"✅\s+{phase}", out), out[-3000:]
    # it tested every operation (a run that tested nothing also exits 0), and none failed
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot()
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"POST /predict", "GET /health", "GET /model"}, out[-3000:]
    assert all(len(case) == 0 for case in cases.values()), out[-3000:]  # no <failure> or <error> child
    assert int(suite.get("failures", "1")) == 0 and int(suite.get("errors", "1")) == 0
    generated = re.search(r"(\d+) generated, (\d+) passed", out)
    assert generated and int(generated.group(1)) >= 50 and generated.group(1) == generated.group(2), out[-3000:]


def test_the_document_is_the_models_contract(digits_url: str, text_url: str) -> None:
    digits = requests.get(f"{digits_url}/openapi.json", timeout=30).json()
    schemas = digits["components"]["schemas"]
    instance = schemas["PredictRequest"]["properties"]["instances"]
    assert instance["maxItems"] == 64 and instance["minItems"] == 1
    forms = instance["items"]["anyOf"]
    assert [f["minItems"] for f in forms] == [1, 8, 64]  # [1, 8, 8], the squeezed [8, 8], the flat 64
    leaf = forms[2]["items"]
    assert (leaf["type"], leaf["minimum"], leaf["maximum"]) == ("number", 0, 16)
    labels = schemas["PredictResponse"]["properties"]["predictions"]["items"]["properties"]["label"]["enum"]
    assert labels == [str(d) for d in range(10)]
    predict = digits["paths"]["/predict"]["post"]
    example = predict["requestBody"]["content"]["application/json"]["example"]
    assert len(example["instances"][0]) == 64  # the model's own first evaluation row
    assert predict["responses"]["200"]["content"]["application/json"]["example"]["predictions"][0]["label"] in labels
    for status in ("400", "405", "413", "415", "422", "503"):
        assert "Error" in json.dumps(predict["responses"][status]), status
    assert "Error" in json.dumps(digits["components"]["responses"]["NotFound"])
    assert schemas["Health"]["properties"]["status"] == {"const": "ok"}
    assert digits["paths"]["/health"]["get"]["responses"]["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}

    text = requests.get(f"{text_url}/openapi.json", timeout=30).json()
    item = text["components"]["schemas"]["PredictRequest"]["properties"]["instances"]["items"]
    assert item["type"] == "string" and item["minLength"] == 1 and item["maxLength"] >= 100
    sample = text["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert isinstance(sample["instances"][0], str) and sample["instances"][0].strip()
