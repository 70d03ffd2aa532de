"""Real-cloud commands: deploy, invoke, logs (and `train --cloud`, whose options live on `train`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lambdaforge import envvars
from lambdaforge.cli.app import LocalOpt, RegionOpt, StackOpt, app, console
from lambdaforge.cli.errors import CliError, CommandFailedError


@app.command()
def deploy(
    guided: Annotated[bool, typer.Option("--guided", help="let `sam deploy --guided` ask and save answers")] = False,
    stack: StackOpt = None,
    region: RegionOpt = None,
    inference_image: Annotated[str | None, typer.Option(help="prebuilt inference image URI (no Docker here)")]
    = None,
    quantize_image: Annotated[str | None, typer.Option(help="prebuilt quantize image URI (no Docker here)")] = None,
    training_image: Annotated[str | None, typer.Option(help="training image URI (default: looked up)")] = None,
    instance_type: Annotated[str, typer.Option(help="training instance type the image must fit")] = "ml.g5.xlarge",
    dry_run: Annotated[bool, typer.Option(help="run the preflight and print the SAM commands only")] = False,
) -> None:
    """Preflight checks, then `sam build` and `sam deploy` from samconfig.toml; prints the stack outputs."""
    import boto3

    from lambdaforge.cloud.deploy import plan_deploy, python312_dir, stack_outputs
    from lambdaforge.cloud.preflight import find_sam
    from lambdaforge.cloud.stack import DEFAULT_STACK
    from lambdaforge.project import project_root

    if (inference_image is None) != (quantize_image is None):
        raise CliError("pass both --inference-image and --quantize-image, or neither")
    root = project_root()
    resolved_region = envvars.region(region) or boto3.Session().region_name
    name = envvars.setting(stack, envvars.STACK_NAME, DEFAULT_STACK)
    image = _preflight(root, resolved_region, prebuilt=bool(inference_image and quantize_image),
                       training_image=training_image, instance_type=instance_type)
    assert resolved_region and image
    plan = plan_deploy(root, sam=find_sam(root) or "sam", stack=name, region=resolved_region, training_image=image,
                       guided=guided, inference_image=inference_image, quantize_image=quantize_image,
                       python312_dir=python312_dir())
    console.print(plan.describe())
    if dry_run:
        return
    env = {**os.environ, **plan.env}
    for cmd in (plan.build, plan.deploy):
        if subprocess.call(cmd, cwd=root, env=env) != 0:
            raise CommandFailedError(f"`{' '.join(cmd[:2])}` failed; its output above says why")
    outputs = stack_outputs(boto3.client("cloudformation", region_name=resolved_region), name)
    result = Table(title=f"stack {name} ({resolved_region})", show_header=False, title_justify="left")
    result.add_column(style="bold")
    result.add_column()
    for key in ("ApiUrl", "ApiAuth", "DataBucketName", "ArtifactsBucketName", "FailureTopicArn"):
        if key in outputs:
            result.add_row(key, outputs[key])
    console.print(result)
    console.print("next: upload data to retrain, then call the API:\n"
                  f"  lambdaforge upload data/digits.csv --stack {name} --region {resolved_region}\n"
                  f"  lambdaforge invoke --stack {name} --region {resolved_region} --json request.json")


def _preflight(root: Path, region: str | None, *, prebuilt: bool, training_image: str | None,
               instance_type: str) -> str | None:
    """Run and show the deploy preflight; raises when a check failed, else returns the training image."""
    from lambdaforge.cloud.preflight import (
        check_container_runtime,
        check_credentials,
        check_poll_budget,
        check_region,
        check_sam,
        check_template,
        check_training_image,
        find_sam,
        raise_on_failures,
    )

    checks = [check_region(region)]
    if region:
        checks.append(check_credentials(region))
    checks.append(check_sam(root))
    if not prebuilt:
        checks.append(check_container_runtime())
    image = training_image
    if not image:
        image_check, image = check_training_image(region, instance_type)
        checks.append(image_check)
    checks.append(check_template(find_sam(root), root / "template.yaml", region))
    checks.append(check_poll_budget(root))
    table = Table(title="deploy preflight", title_justify="left")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    for c in checks:
        table.add_row(c.name, "[green]ok[/green]" if c.ok else "[red]failed[/red]", c.detail)
    console.print(table)
    raise_on_failures(checks)
    return image


@app.command()
def invoke(
    json_file: Annotated[str, typer.Option("--json", help="request body file, or - for standard input")],
    url: Annotated[str | None, typer.Option(help="API URL (default: the stack's ApiUrl)")] = None,
    path: Annotated[str, typer.Option(help="route to call")] = "/predict",
    method: Annotated[str, typer.Option(help="HTTP method")] = "POST",
    auth: Annotated[str | None, typer.Option(help="IAM, JWT or NONE (default: the stack's ApiAuth)")] = None,
    token: Annotated[str | None, typer.Option(help="JWT bearer token (or LAMBDAFORGE_API_TOKEN)")] = None,
    stack: StackOpt = None,
    region: RegionOpt = None,
    local: LocalOpt = False,
) -> None:
    """Call the deployed API (SigV4 for IAM auth, bearer token for JWT); prints the answer and the latency."""
    from lambdaforge.cli.target import resolve_target
    from lambdaforge.cloud.invoke import call_api

    body = sys.stdin.buffer.read() if json_file == "-" else _read(Path(json_file))
    try:
        json.loads(body)
    except ValueError as exc:
        raise CliError(f"{json_file}: not valid JSON ({exc})") from exc
    mode = auth.upper() if auth else None
    resolved_region = envvars.region(region)
    base = url or envvars.setting(None, envvars.API_URL, "")
    if not base or mode is None:
        ref = resolve_target(stack, region, local=local)
        base = base or ref.output("ApiUrl")
        mode = mode or ref.outputs.get("ApiAuth", "NONE")
        resolved_region = resolved_region or ref.region
    answer = call_api(base.rstrip("/") + path, body, method=method.upper(), auth=mode, region=resolved_region,
                      token=envvars.setting(token, envvars.API_TOKEN, ""))
    parsed = answer.json()
    if parsed is not None:
        console.print_json(json.dumps(parsed))
    else:
        console.print(answer.body.decode(errors="replace"), markup=False)
    console.print(f"HTTP {answer.status} in {answer.latency_ms:.1f} ms ({mode} auth)")
    if answer.status >= 400:
        raise CommandFailedError(f"the API answered {answer.status}")


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    return path.read_bytes()


@app.command()
def logs(
    what: Annotated[str, typer.Argument(help="trigger, quantize, promote, inference, or training")] = "inference",
    job: Annotated[str | None, typer.Option(help="training job name (default: the latest)")] = None,
    since: Annotated[str, typer.Option(help="how far back: 30s, 10m, 2h, 1d")] = "1h",
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    stack: StackOpt = None,
    region: RegionOpt = None,
    local: LocalOpt = False,
) -> None:
    """Recent logs of a function or of a training job, without looking up log group names."""
    from lambdaforge.cli.target import resolve_target
    from lambdaforge.cloud.logs import function_source, parse_since, tail, training_source

    ref = resolve_target(stack, region, local=local)
    source = training_source(ref, job) if what == "training" else function_source(ref, what)
    console.print(f"[bold]{source.label}[/bold]: {source.group}")

    def emit(event: dict[str, Any]) -> None:
        stamp = datetime.fromtimestamp(event["timestamp"] / 1000, UTC).strftime("%H:%M:%S")
        # whole lines, never wrapped: people grep logs
        console.print(f"{stamp} {event['message'].rstrip()}", markup=False, highlight=False, soft_wrap=True)

    try:
        count = tail(ref.client("logs"), source, parse_since(since), emit, follow=follow)
    except KeyboardInterrupt:
        return
    if count == 0:
        console.print(f"no log lines in the last {since}")


def cloud_train(recipe: str, data: str, *, instance_type: str, instance_count: int, spot: bool, role: str | None,
                bucket: str | None, stack: str | None, region: str | None, training_image: str | None,
                hps: dict[str, str], download: Path | None, wait: bool) -> None:
    """`lambdaforge train --cloud`: one SageMaker job via ModelTrainer, followed with a progress display."""
    import boto3

    from lambdaforge.cloud.preflight import check_training_image
    from lambdaforge.cloud.stack import find_stack
    from lambdaforge.cloud.training import CloudTrainingSpec, download_model, follow, start_training
    from lambdaforge.s3transfer import upload_file

    resolved_region = envvars.region(region) or boto3.Session().region_name
    if not resolved_region:
        raise CliError("no AWS region", hint="pass --region or set AWS_REGION")
    outputs: dict[str, str] = {}
    if not (role and bucket):
        outputs = find_stack(stack, resolved_region).outputs
    role_arn = role or envvars.setting(None, envvars.SAGEMAKER_ROLE, "") or outputs.get("SageMakerRoleArn", "")
    target_bucket = bucket or outputs.get("ArtifactsBucketName", "")
    if not target_bucket:
        raise CliError("no bucket for outputs", hint="pass --bucket, or deploy the stack first")
    image = training_image
    if image is None:
        check, image = check_training_image(resolved_region, instance_type)
        if not check.ok:
            raise CliError(f"{check.detail}", hint=check.fix)
    session = boto3.Session(region_name=resolved_region)
    if not data.startswith("s3://"):
        local = Path(data)
        if not local.is_file():
            raise CliError(f"{data}: not an s3:// URI or a local file")
        key = f"input/{recipe}/{time.strftime('%Y%m%d-%H%M%S')}/{local.name}"
        data = upload_file(session.client("s3"), local, target_bucket, key)
        console.print(f"uploaded {local} to {data}")
    spec = CloudTrainingSpec(recipe=recipe, data_uri=data, role_arn=role_arn, bucket=target_bucket,
                             region=resolved_region, training_image=str(image), instance_type=instance_type,
                             instance_count=instance_count, spot=spot, hyperparameters=dict(hps))
    with console.status("submitting the training job (SageMaker SDK)"):
        name = start_training(spec, session)
    console.print(f"training job [bold]{name}[/bold] ({instance_type} x{instance_count}, "
                  f"{'spot' if spot else 'on-demand'}) in {resolved_region}")
    if not wait:
        return
    sm = session.client("sagemaker")
    with console.status("waiting") as status_line:
        def update(described: dict[str, Any]) -> None:
            metrics = {m["MetricName"]: m["Value"] for m in described.get("FinalMetricDataList", [])}
            shown = "  ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
            status_line.update(f"{described['TrainingJobStatus']} / {described.get('SecondaryStatus', '')}  {shown}")

        described = follow(sm, name, update)
    if described["TrainingJobStatus"] != "Completed":
        reason = described.get("FailureReason", "no reason")
        raise CommandFailedError(f"{name} {described['TrainingJobStatus']}: {reason}")
    console.print(f"[green]{name} completed[/green] (billable {described.get('BillableTimeInSeconds', '?')} s)")
    if download:
        download_model(session.client("s3"), described, download)
        console.print(f"model directory: {download}")
