"""Run a function's handler in this process (what `serve` uses: no cold start per request).

One invocation at a time, like one Lambda execution environment: Powertools' resolver keeps
the current event on the app object, so concurrent calls must not share it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from lambdaforge.local.context import LocalLambdaContext
from lambdaforge.local.errors import LocalCloudError


def load_handler_module(code_dir: Path, module: str = "app") -> ModuleType:
    path = Path(code_dir) / f"{module}.py"
    if not path.is_file():
        raise LocalCloudError(f"{path}: handler module not found")
    name = f"lambdaforge_fn_{Path(code_dir).name}_{module}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LocalCloudError(f"{path}: cannot be imported")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class InProcessFunction:
    def __init__(self, code_dir: Path, handler: str = "app.lambda_handler", *, env: dict[str, str] | None = None,
                 function_name: str = "inference", memory_mb: int = 1024, timeout_s: float = 30.0) -> None:
        os.environ.update(env or {})
        module_name, _, func = handler.rpartition(".")
        self.module = load_handler_module(code_dir, module_name)
        self.handler = getattr(self.module, func)
        self.function_name = function_name
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            context = LocalLambdaContext(function_name=self.function_name, memory_limit_in_mb=self.memory_mb,
                                         timeout_s=self.timeout_s)
            result: dict[str, Any] = self.handler(event, context)
            return result
