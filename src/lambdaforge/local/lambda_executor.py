"""The local Lambda executor: what moto cannot do (run a function without Docker), done by running
the real handler from functions/ in a worker process with the environment that version has.

Invocations go through moto's own Lambda API (the workflow's tasks, boto3 clients, the CLI); the
executor replaces only the step where moto would start a container. Aliases honour their routing
weights; asynchronous invocations are retried and then sent to the OnFailure destination, as Lambda does.
"""

from __future__ import annotations

import json
import os
import queue
import random
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambdaforge.local.errors import LocalCloudError
from lambdaforge.local.worker import END_PREFIX

LogSink = Callable[[str, str, str], None]  # (function name, version, line)
RoleCredentials = Callable[[str, str], dict[str, str]]  # (role ARN, session name) -> AWS_* variables
WORKER_START_TIMEOUT = 120.0
OUTPUT_DRAIN_TIMEOUT = 5.0  # seconds to wait for an invocation's last output line after its answer


@dataclass(frozen=True)
class FunctionCode:
    """Where a function's code lives locally and how to call it."""

    code_dir: Path
    handler: str
    extra_paths: tuple[Path, ...] = ()


@dataclass
class Invocation:
    payload: bytes
    error: bool
    version: str
    duration_ms: float = 0.0
    logs: list[str] = field(default_factory=list)


class _Worker:
    def __init__(self, name: str, version: str, code: FunctionCode, env: dict[str, str], sink: LogSink) -> None:
        read_fd, write_fd = os.pipe()
        self.name, self.version = name, version
        self.key: tuple[str, str, str] = (name, version, "")
        full_env = {**env, "LAMBDAFORGE_WORKER_FD": str(write_fd)}
        python_path = [str(code.code_dir), *[str(p) for p in code.extra_paths]]
        if env.get("PYTHONPATH"):
            python_path.append(env["PYTHONPATH"])
        full_env["PYTHONPATH"] = os.pathsep.join(python_path)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lambdaforge.local.worker", str(code.code_dir), code.handler],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env,
            cwd=str(code.code_dir), pass_fds=(write_fd,), text=True, bufsize=1)
        os.close(write_fd)
        self._results = os.fdopen(read_fd, "r")
        self._lines: queue.Queue[str] = queue.Queue()
        self.captured: list[str] | None = None
        self._end_line = ""
        self._ended = threading.Event()
        threading.Thread(target=self._pump, args=(sink,), daemon=True).start()
        ready = self._read(WORKER_START_TIMEOUT)
        if ready is None or not ready.get("ready"):
            self.kill()
            raise LocalCloudError(f"local worker for {name}:{version} did not start")
        self.init_ms = float(ready.get("init_ms", 0.0))

    def _pump(self, sink: LogSink) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            text = line.rstrip("\n")
            if self.captured is not None:
                self.captured.append(text)
            sink(self.name, self.version, text)
            if text == self._end_line:
                self._ended.set()

    def _read(self, timeout: float) -> dict[str, Any] | None:
        ready, _, _ = select.select([self._results], [], [], timeout)
        if not ready:
            return None
        line = self._results.readline()
        return json.loads(line) if line else None

    def invoke(self, event: Any, context: dict[str, Any], timeout: float) -> tuple[Any, bool, list[str]]:
        assert self.proc.stdin is not None
        request_id = context["aws_request_id"]
        self.captured = []
        self._end_line = f"{END_PREFIX}{request_id}"
        self._ended.clear()
        try:
            self.proc.stdin.write(json.dumps({"id": request_id, "event": event, "context": context}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return {"errorType": "Runtime.ExitError", "errorMessage": "the execution environment exited"}, True, []
        response = self._read(timeout)
        if response is not None:
            # every line it printed has been through the sink (logs, EMF metrics) before the caller hears back
            self._ended.wait(OUTPUT_DRAIN_TIMEOUT)
        logs, self.captured = self.captured, None
        if response is None:
            self.kill()
            if self.proc.poll() is not None and self.proc.returncode not in (0, -9):
                return {"errorType": "Runtime.ExitError",
                        "errorMessage": f"exited with code {self.proc.returncode}"}, True, logs
            return {"errorType": "Sandbox.Timedout",
                    "errorMessage": f"Task timed out after {timeout:.2f} seconds"}, True, logs
        if "error" in response:
            return response["error"], True, logs
        return response.get("result"), False, logs

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class LambdaExecutor:
    def __init__(self, *, base_env: dict[str, str], region: str, account: str, sink: LogSink,
                 max_workers_per_version: int = 4, credentials: RoleCredentials | None = None) -> None:
        self.base_env = base_env
        self.credentials = credentials
        self.region = region
        self.account = account
        self.sink = sink
        self.max_workers = max_workers_per_version
        self.code: dict[str, FunctionCode] = {}
        self._idle: dict[tuple[str, str, str], list[_Worker]] = {}
        self._count: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Condition()
        self._closed = False

    def register(self, function_name: str, code: FunctionCode) -> None:
        self.code[function_name] = code

    # --- moto glue
    def backend(self) -> Any:
        from moto.awslambda.models import lambda_backends

        return lambda_backends[self.account][self.region]

    def resolve(self, function_name: str, qualifier: str | None) -> tuple[str, str]:
        """(function name, concrete version) for a name, ARN, version or alias (honouring routing weights)."""
        name = function_name
        if name.startswith("arn:"):
            parts = name.split(":")
            name = parts[6]
            if len(parts) > 7 and not qualifier:
                qualifier = parts[7]
        elif ":" in name:
            name, qualifier = name.split(":", 1)
        if not qualifier or qualifier == "$LATEST" or qualifier.isdigit():
            return name, qualifier or "$LATEST"
        alias = self.backend()._lambdas.get_alias(qualifier, name)
        weights = (alias.routing_config or {}).get("AdditionalVersionWeights") or {}
        roll = random.random()  # noqa: S311 - traffic splitting, not security
        for version, weight in weights.items():
            if roll < float(weight):
                return name, str(version)
            roll -= float(weight)
        return name, str(alias.function_version)

    def _environment(self, fn: Any, version: str) -> dict[str, str]:
        env = dict(self.base_env)
        env.update({k: str(v) for k, v in (fn.environment_vars or {}).items()})
        env.update({
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name, "AWS_LAMBDA_FUNCTION_VERSION": version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size), "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region, "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.function_name}",
            # No X-Ray daemon locally: tracing stays off, the rest of Powertools runs as deployed.
            "POWERTOOLS_TRACE_DISABLED": "true",
        })
        if self.credentials:  # the function acts as its execution role, as in Lambda
            env.update(self.credentials(fn.role, fn.function_name))
        return env

    @staticmethod
    def _config_key(fn: Any) -> str:
        """A configuration change means new execution environments, as in Lambda."""
        return json.dumps([fn.environment_vars, fn.timeout, fn.memory_size, fn.handler], sort_keys=True, default=str)

    def _worker(self, name: str, version: str, fn: Any) -> _Worker:
        key = (name, version, self._config_key(fn))
        with self._lock:
            while True:
                if self._closed:
                    raise LocalCloudError("the local cloud is shutting down")
                idle = self._idle.setdefault(key, [])
                while idle:
                    worker = idle.pop()
                    if worker.alive:
                        return worker
                    self._count[key] -= 1
                if self._count.get(key, 0) < self.max_workers:
                    self._count[key] = self._count.get(key, 0) + 1
                    break
                self._lock.wait(timeout=1.0)
        try:
            code = self.code[name]
        except KeyError:
            with self._lock:
                self._count[key] -= 1
            raise LocalCloudError(f"function {name} has no local code registered") from None
        try:
            worker = _Worker(name, version, code, self._environment(fn, version), self.sink)
            worker.key = key
            return worker
        except Exception:
            with self._lock:
                self._count[key] -= 1
            raise

    def _release(self, worker: _Worker) -> None:
        key = worker.key
        with self._lock:
            if worker.alive and not self._closed:
                self._idle.setdefault(key, []).append(worker)
            else:
                self._count[key] -= 1
                worker.kill()
            self._lock.notify_all()

    def invoke(self, function_name: str, qualifier: str | None, event: Any) -> Invocation:
        name, version = self.resolve(function_name, qualifier)
        fn = self.backend().get_function(name, None if version == "$LATEST" else version)
        worker = self._worker(name, version, fn)
        context = {"function_name": name, "function_version": version, "memory_limit_in_mb": int(fn.memory_size),
                   "timeout_s": float(fn.timeout), "region": self.region, "account_id": self.account,
                   "aws_request_id": str(uuid.uuid4())}
        started = time.perf_counter()
        try:
            result, error, logs = worker.invoke(event, context, float(fn.timeout))
        finally:
            self._release(worker)
        return Invocation(payload=json.dumps(result, default=str).encode(), error=error, version=version,
                          duration_ms=(time.perf_counter() - started) * 1000, logs=logs)

    def invoke_async(self, function_name: str, qualifier: str | None, event: Any) -> None:
        """Event invocation: retried per the function's EventInvokeConfig, then its OnFailure destination."""
        threading.Thread(target=self._run_async, args=(function_name, qualifier, event), daemon=True).start()

    def _run_async(self, function_name: str, qualifier: str | None, event: Any) -> None:
        name, _ = self.resolve(function_name, qualifier)
        fn = self.backend().get_function(name, None)
        config = fn.event_invoke_config[0].config if fn.event_invoke_config else {}
        attempts = 1 + int(config.get("MaximumRetryAttempts", 2))
        result = None
        for attempt in range(attempts):
            try:
                result = self.invoke(function_name, qualifier, event)
            except LocalCloudError as exc:
                self.sink(name, "-", f"async invocation could not run: {exc}")
                return
            if not result.error:
                return
            if attempt + 1 < attempts:
                time.sleep(min(1.0 * (attempt + 1), 3.0))
        destination = ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        if destination and result is not None:
            self._send_failure(destination, fn, event, result)

    def _send_failure(self, destination: str, fn: Any, event: Any, result: Invocation) -> None:
        record = {"version": "1.0", "requestContext": {"functionArn": fn.function_arn, "condition": "RetriesExhausted",
                                                       "approximateInvokeCount": 3},
                  "requestPayload": event, "responseContext": {"functionError": "Unhandled"},
                  "responsePayload": json.loads(result.payload)}
        if ":sqs:" in destination:
            from moto.sqs.models import sqs_backends

            queue_name = destination.rsplit(":", maxsplit=1)[-1]
            sqs_backends[self.account][self.region].send_message(queue_name, json.dumps(record))

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            workers = [w for ws in self._idle.values() for w in ws]
            self._idle.clear()
            self._lock.notify_all()
        for worker in workers:
            worker.kill()
