"""The template passes SAM's and the ecosystem's linters, and the zip functions build offline."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.infra.conftest import ROOT, tool, tool_env


def run(*cmd: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_sam_validate_lint() -> None:
    proc = run(tool("sam"), "validate", "--lint", "--template-file", "template.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is a valid SAM Template" in proc.stdout + proc.stderr


def test_cfn_lint() -> None:
    proc = run(tool("cfn-lint"), "template.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _checkov(path: Path, cwd: Path) -> dict[str, Any]:
    proc = run(tool("checkov"), "-f", str(path), "--framework", "cloudformation", "--skip-download",
               "--output", "json", cwd=cwd)
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_checkov_has_no_failed_check_and_every_skip_is_justified(translated: Any, tmp_path: Path) -> None:
    source = _checkov(ROOT / "template.yaml", ROOT)
    (tmp_path / "translated.json").write_text(json.dumps(translated.cfn))
    generated = _checkov(tmp_path / "translated.json", tmp_path)
    for name, report in (("template.yaml", source), ("translated", generated)):
        summary = report["summary"]
        failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
        assert summary["failed"] == 0, f"{name}: {failed}"
        assert summary["passed"] > 50
        for skipped in report["results"]["skipped_checks"]:
            comment = (skipped.get("check_result") or {}).get("suppress_comment") or ""
            assert len(comment) > 20, f"{name}: {skipped['check_id']} on {skipped['resource']} has no justification"


def test_zip_functions_build_offline(tmp_path: Path) -> None:
    for resource in ("LibraryLayer", "TriggerFunction", "PromoteFunction"):
        proc = run(tool("sam"), "build", resource, "--build-dir", str(tmp_path / resource), "--template-file",
                   "template.yaml")
        assert proc.returncode == 0, f"{resource}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    assert (tmp_path / "LibraryLayer" / "LibraryLayer" / "python" / "lambdaforge" / "pipeline" / "trigger.py").is_file()
    assert (tmp_path / "TriggerFunction" / "TriggerFunction" / "app.py").is_file()
    assert (tmp_path / "PromoteFunction" / "PromoteFunction" / "app.py").is_file()
    layer = tmp_path / "LibraryLayer" / "LibraryLayer" / "python"
    size = sum(p.stat().st_size for p in layer.rglob("*") if p.is_file())
    assert size < 5 * 2**20  # pure Python: no dependencies were vendored into it


def test_the_zip_functions_import_nothing_the_runtime_lacks() -> None:
    """The trigger and promote functions run on python3.12 + boto3 + the Powertools layer only."""
    code = ("import sys\n"
            "sys.path[:0] = ['functions/trigger', 'src']\n"
            "import lambdaforge.pipeline.trigger, lambdaforge.pipeline.promote, lambdaforge.pipeline.payloads\n"
            "heavy = [m for m in ('numpy', 'torch', 'onnxruntime', 'onnx', 'tokenizers', 'sklearn')\n"
            "         if m in sys.modules]\n"
            "print(heavy)\n")
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_samconfig_deploys_with_the_needed_settings() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    deploy = config["default"]["deploy"]["parameters"]
    assert {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"} <= set(deploy["capabilities"].split())
    assert deploy["resolve_s3"] is True and deploy["resolve_image_repos"] is True
    assert config["default"]["global"]["parameters"]["stack_name"]
    from lambdaforge.project import load_template

    params = set(load_template(ROOT / "template.yaml")["Parameters"])
    overridden = set(re.findall(r'(\w+)="', deploy["parameter_overrides"]))
    assert overridden and overridden <= params


def test_images_built_elsewhere_need_no_docker_to_deploy(tmp_path: Path) -> None:
    """The way out when there is no container runtime: the derived template builds with zip functions only."""
    from lambdaforge.cloud.deploy import plan_deploy

    plan = plan_deploy(ROOT, sam=tool("sam"), stack="s", region="us-east-1", training_image="img:1",
                       inference_image="123456789012.dkr.ecr.us-east-1.amazonaws.com/inference:1",
                       quantize_image="123456789012.dkr.ecr.us-east-1.amazonaws.com/quantize:1")
    overrides = [o for o in plan.deploy if o.startswith(("InferenceImageUri=", "QuantizeImageUri="))]
    proc = run(tool("sam"), "build", "--template-file", str(plan.template), "--build-dir", str(tmp_path / "b"),
               "--parameter-overrides", *overrides)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    built = (tmp_path / "b" / "template.yaml").read_text()
    assert "InferenceImageUri" in built and (tmp_path / "b" / "TriggerFunction" / "app.py").is_file()
