"""Pipeline benchmark: the digits pipeline in the embedded cloud, from upload to a prediction over HTTP.

Every workflow state is timed from the Step Functions execution history (each state's Entered and
Exited events), relative to the upload's start, together with the upload, the execution's start
(the object-created event through the trigger function) and the first answered prediction.

    python benchmarks/bench_pipeline.py --out benchmarks/results/pipeline.json
    python benchmarks/bench_pipeline.py --out benchmarks/results/pipeline.json --plot-only   # re-plot the JSON

The figure (pipeline.png beside the JSON) is a timeline of the states, one row per state.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import machine, machine_line, pyplot, read_json, write_json


def _epoch(stamp: datetime) -> float:
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def execution_history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def state_timeline(events: list[dict[str, Any]], t0: float) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Each state visit, in order, as {state, kind, start_s, end_s} in seconds after `t0` (epoch seconds),
    and the execution's own start and end.

    A state ends at its Exited event; one without (a Fail state, a run cut short) ends where the next
    state starts or the execution ends.
    """
    visits: list[dict[str, Any]] = []
    execution: dict[str, float] = {}
    for event in sorted(events, key=lambda e: e["id"]):
        kind, at = event["type"], round(_epoch(event["timestamp"]) - t0, 3)
        if kind == "ExecutionStarted":
            execution["started_s"] = at
        elif kind in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"):
            execution["ended_s"] = at
        elif kind.endswith("StateEntered"):
            if visits and visits[-1]["end_s"] is None:
                visits[-1]["end_s"] = at
            visits.append({"state": event["stateEnteredEventDetails"]["name"], "kind": kind[: -len("StateEntered")],
                           "start_s": at, "end_s": None})
        elif kind.endswith("StateExited") and visits and visits[-1]["end_s"] is None:
            visits[-1]["end_s"] = at
    if visits and visits[-1]["end_s"] is None:
        visits[-1]["end_s"] = execution.get("ended_s", visits[-1]["start_s"])
    return visits, execution


def run_pipeline(recipe: str) -> dict[str, Any]:
    from lambdaforge.cloud.data import upload_path
    from lambdaforge.local.cloud import LocalCloud
    from lambdaforge.local.up import follow, sample_body, start_gateway, wait_for_new_execution
    from lambdaforge.recipes import get_recipe

    with tempfile.TemporaryDirectory(prefix="lf-bench-pipeline-") as tmp:
        t0 = time.time()
        cloud = LocalCloud(state_dir=Path(tmp), parameters={"Recipe": recipe})
        cloud.start()
        try:
            started = time.time()
            gateway = start_gateway(cloud, 0)
            data = get_recipe(recipe).write_sample_data(Path(tmp) / "data")
            upload_t = time.time()
            upload_path(cloud.client("s3"), cloud.outputs["DataBucketName"], recipe, data)
            uploaded = time.time()
            name = wait_for_new_execution(cloud, set(), timeout=120)
            assert name is not None, "no run started"
            run = follow(cloud, name, None)
            assert run.status == "SUCCEEDED", run.error
            arn = cloud.outputs["StateMachineArn"].replace(":stateMachine:", ":execution:") + f":{name}"
            visits, execution = state_timeline(execution_history(cloud.client("stepfunctions"), arn), upload_t)
            body = sample_body(gateway.url)
            request = urllib.request.Request(f"{gateway.url}/predict", data=json.dumps(body).encode(),
                                             headers={"content-type": "application/json"}, method="POST")
            with urllib.request.urlopen(request, timeout=60) as resp:
                answer: dict[str, Any] = json.loads(resp.read())
            answered = time.time()
            gateway.stop()
        finally:
            cloud.stop()
    return {
        "recipe": recipe,
        "seconds": {"local_cloud_start": round(started - t0, 2), "upload_to_answering": round(answered - upload_t, 2),
                    "workflow": round(run.seconds, 2)},
        # seconds after the upload started: when the pipeline's milestones happened
        "events_s": {"upload_start": 0.0, "upload_done": round(uploaded - upload_t, 3),
                     "execution_started": execution.get("started_s"), "execution_ended": execution.get("ended_s"),
                     "first_answer": round(answered - upload_t, 3)},
        "timeline": visits, "states": run.states, "prediction": answer["predictions"][0], "model": answer["model"],
    }


def _rows(visits: list[dict[str, Any]]) -> list[str]:
    """One row per state, in the order the run first entered them."""
    rows: list[str] = []
    for v in visits:
        if v["state"] not in rows:
            rows.append(v["state"])
    return rows


def plot(results: dict[str, Any], path: Path) -> None:
    """A Gantt chart of the workflow's states after the upload, with the upload and the first answer marked."""
    plt = pyplot()
    visits: list[dict[str, Any]] = results.get("timeline") or []
    marks: dict[str, float | None] = results.get("events_s") or {}
    rows = _rows(visits)
    fig, ax = plt.subplots(figsize=(14, max(3.5, 0.34 * len(rows) + 1.8)))
    colors = {"Task": "tab:blue", "Wait": "tab:gray", "Choice": "tab:olive", "Pass": "tab:cyan",
              "Succeed": "tab:green", "Fail": "tab:red"}
    end = max([v["end_s"] for v in visits] + [m for m in marks.values() if m is not None] + [1.0])
    for row, state in enumerate(rows):
        mine = [v for v in visits if v["state"] == state]
        for v in mine:  # a white edge separates repeated visits; instant states keep a visible sliver
            width = max(v["end_s"] - v["start_s"], end * 0.002)
            ax.barh(row, width, 0.7, left=v["start_s"], color=colors.get(v["kind"], "tab:purple"),
                    edgecolor="white", linewidth=0.6 if width > end * 0.01 else 0)
        total = sum(v["end_s"] - v["start_s"] for v in mine)
        label = (f"{total:.2f} s" if total >= 0.1 else f"{total * 1000:.0f} ms") + (
            f" ({len(mine)} visits)" if len(mine) > 1 else "")
        ax.text(max(v["end_s"] for v in mine) + end * 0.005, row, label, va="center", fontsize=7)
    if not visits:  # results from before the states were timed: say so rather than draw an empty chart
        ax.text(0.5, 0.5, "no per-state timing in these results (re-run the benchmark)", transform=ax.transAxes,
                ha="center", va="center")
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.invert_yaxis()
    styles = {"upload_start": ("upload", "black", "-"), "upload_done": ("upload done", "black", ":"),
              "execution_started": ("execution started (event → trigger)", "tab:purple", "--"),
              "first_answer": ("first prediction answered (HTTP)", "tab:green", "-")}
    for key, (label, color, style) in styles.items():
        at = marks.get(key)
        if at is not None:
            ax.axvline(at, color=color, linestyle=style, linewidth=1.2, label=f"{label}: {at:.2f} s")
    for kind in dict.fromkeys(v["kind"] for v in visits):
        ax.barh([0], [0], color=colors.get(kind, "tab:purple"), label=f"{kind} state")
    ax.set_xlim(-end * 0.01, end * 1.12)
    ax.set_xlabel("seconds after the upload started")
    ax.set_ylabel("workflow state (in order of first entry)")
    secs = results.get("seconds", {})
    ax.set_title(f"{results.get('recipe', '')} pipeline in the local cloud: upload to first answer "
                 f"{secs.get('upload_to_answering', '?')} s, workflow {secs.get('workflow', '?')} s", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    footer = machine_line(results.get("machine", {}))
    if footer:
        fig.text(0.5, 0.01, footer, ha="center", fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pipeline.json"))
    parser.add_argument("--recipe", default="digits")
    parser.add_argument("--plot-only", action="store_true", help="re-plot the existing --out JSON, measure nothing")
    args = parser.parse_args()
    if args.plot_only:
        plot(read_json(args.out), args.out.with_suffix(".png"))
        return
    results = {"machine": machine(), **run_pipeline(args.recipe)}
    print(json.dumps(results["seconds"], indent=2))
    write_json(args.out, results)
    plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
