"""A person opening /docs in a browser sees the API: headless Chromium renders Swagger UI and lists /predict."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest

from tests.functional.conftest import Api

pytestmark = pytest.mark.browser


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: `make chromium` installs Debian's package (make test does)")
    return path


def test_docs_page_lists_predict(digits_api: Api) -> None:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", f"{digits_api.url}/docs"],
            capture_output=True, text=True, timeout=120, check=False)
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "swagger-ui" in dom
    # rendered by Swagger UI's JavaScript from the OpenAPI document, not present in the served HTML
    assert 'data-path="/predict"' in dom or "opblock-summary-path" in dom
    assert "/predict" in dom and "/health" in dom
