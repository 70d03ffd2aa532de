"""One local Lambda execution environment: `python -m lambdaforge.local.worker CODE_DIR HANDLER`.

It imports the handler once (the cold start), then answers invocations read as JSON lines on
stdin, writing each result on its own pipe (fd in LAMBDAFORGE_WORKER_FD) so that whatever the
handler prints stays a log line, as in Lambda. Each invocation's output ends with Lambda's
`END RequestId: <id>` line, so the executor knows it has read (and turned into metrics) every line
the invocation printed before it answers the caller.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

END_PREFIX = "END RequestId: "


def _error(exc: BaseException) -> dict[str, Any]:
    return {"errorType": type(exc).__name__, "errorMessage": str(exc),
            "stackTrace": traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:]}


def main() -> int:
    code_dir, handler_name = sys.argv[1], sys.argv[2]
    out = os.fdopen(int(os.environ["LAMBDAFORGE_WORKER_FD"]), "w", buffering=1)
    sys.path.insert(0, code_dir)
    module_name, _, func_name = handler_name.rpartition(".")
    init_error: dict[str, Any] | None = None
    handler: Any = None
    started = time.perf_counter()
    try:
        module = __import__(module_name)
        handler = getattr(module, func_name)
    except BaseException as exc:
        init_error = {**_error(exc), "errorType": f"Runtime.ImportModuleError: {type(exc).__name__}"}
    out.write(json.dumps({"ready": True, "init_ms": (time.perf_counter() - started) * 1000}) + "\n")

    from lambdaforge.local.context import LocalLambdaContext

    for line in sys.stdin:
        request = json.loads(line)
        context = LocalLambdaContext(**request["context"])
        if init_error is not None:
            print(f"{END_PREFIX}{request['id']}", flush=True)
            out.write(json.dumps({"id": request["id"], "error": init_error}) + "\n")
            continue
        try:
            result = handler(request["event"], context)
            payload = json.dumps({"id": request["id"], "result": result}, default=str)
        except Exception as exc:
            payload = json.dumps({"id": request["id"], "error": _error(exc)})
        sys.stdout.flush()
        sys.stderr.flush()
        print(f"{END_PREFIX}{request['id']}", flush=True)
        out.write(payload + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
