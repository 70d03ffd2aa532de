"""`lambdaforge up` (what `make demo` runs) follows every run of its stack, not only the one it started:
data uploaded with any S3 client (here boto3, as `aws --endpoint-url ... s3 cp` would) retrains, and
`up` shows that run to its end."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3

from lambdaforge.recipes import get_recipe


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return out


def _wait_for(lines: queue.Queue[str], seen: list[str], text: str, timeout: float) -> str:
    """The first line (from now) that contains `text`, or matches it as a regular expression."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line or re.search(text, line):
            return line
    raise AssertionError(f"`lambdaforge up` never printed {text!r}; it printed:\n" + "\n".join(seen[-60:]))


def test_up_follows_a_run_it_did_not_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    cli = Path(sys.executable).parent / "lambdaforge"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.Popen([str(cli), "up", "--recipe", "digits", "--port", "0", "--state-dir", str(state)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen: list[str] = []
    try:
        lines = _lines(proc)
        _wait_for(lines, seen, "serving; upload new data", timeout=600)
        first = [line for line in seen if "succeeded in" in line]
        assert first, seen
        local = json.loads((state / "local.json").read_text())
        s3 = boto3.client("s3", endpoint_url=local["endpoint"], region_name=local["region"],
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        data = get_recipe("digits").write_sample_data(tmp_path / "data")
        s3.upload_file(str(data), local["outputs"]["DataBucketName"], "data/digits/by-another-client.csv")
        ended = _wait_for(lines, seen, r"^run digits-\w+: [A-Z_]+", timeout=600)
        assert ended.rstrip().endswith("SUCCEEDED"), "\n".join(seen[-40:])
        assert ended.split()[1].rstrip(":") not in " ".join(first)  # a second run, not the first again
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
