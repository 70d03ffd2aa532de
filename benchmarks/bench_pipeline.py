"""Pipeline benchmark: the digits pipeline in the embedded cloud, from upload to a prediction over HTTP.

    python benchmarks/bench_pipeline.py --out benchmarks/results/pipeline.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import machine, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pipeline.json"))
    parser.add_argument("--recipe", default="digits")
    args = parser.parse_args()

    from lambdaforge.cloud.data import upload_path
    from lambdaforge.local.cloud import LocalCloud
    from lambdaforge.local.up import follow, sample_body, start_gateway, wait_for_new_execution
    from lambdaforge.recipes import get_recipe

    with tempfile.TemporaryDirectory(prefix="lf-bench-pipeline-") as tmp:
        t0 = time.time()
        cloud = LocalCloud(state_dir=Path(tmp), parameters={"Recipe": args.recipe})
        cloud.start()
        try:
            started = time.time()
            gateway = start_gateway(cloud, 0)
            data = get_recipe(args.recipe).write_sample_data(Path(tmp) / "data")
            upload_t = time.time()
            upload_path(cloud.client("s3"), cloud.outputs["DataBucketName"], args.recipe, data)
            name = wait_for_new_execution(cloud, set(), timeout=120)
            assert name is not None, "no run started"
            run = follow(cloud, name, None)
            assert run.status == "SUCCEEDED", run.error
            body = sample_body(gateway.url)
            request = urllib.request.Request(f"{gateway.url}/predict", data=json.dumps(body).encode(),
                                             headers={"content-type": "application/json"}, method="POST")
            with urllib.request.urlopen(request, timeout=60) as resp:
                answer: dict[str, Any] = json.loads(resp.read())
            answered = time.time()
            gateway.stop()
        finally:
            cloud.stop()
    results = {
        "machine": machine(), "recipe": args.recipe,
        "seconds": {"local_cloud_start": round(started - t0, 2), "upload_to_answering": round(answered - upload_t, 2),
                    "workflow": round(run.seconds, 2)},
        "states": run.states, "prediction": answer["predictions"][0], "model": answer["model"],
    }
    print(json.dumps(results["seconds"], indent=2))
    write_json(args.out, results)


if __name__ == "__main__":
    main()
