"""`lambdaforge deploy`: preflight, then `sam build` and `sam deploy` from samconfig.toml.

SAM CLI does the work. This module decides its arguments: the resolved training image goes in as
a parameter override (merged with samconfig's, which SAM would otherwise replace), and when the
images were built elsewhere, a derived template points the image functions at them so that
`sam build` only builds the zip functions.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lambdaforge.cloud.errors import CloudError
from lambdaforge.project import load_template

IMAGE_FUNCTIONS = {"InferenceFunction": "inference", "QuantizeFunction": "quantize"}


@dataclass(frozen=True)
class DeployPlan:
    template: Path
    build: list[str]
    deploy: list[str]
    parameters: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return "\n".join(shlex.join(cmd) for cmd in (self.build, self.deploy))


def samconfig_overrides(root: Path) -> dict[str, str]:
    path = root / "samconfig.toml"
    if not path.is_file():
        return {}
    config = tomllib.loads(path.read_text())
    raw = config.get("default", {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
    if isinstance(raw, list):
        raw = " ".join(raw)
    return dict(re.findall(r'(\w+)="?([^"\s]*)"?', raw))


class _Dumper(yaml.SafeDumper):
    """Writes CloudFormation's intrinsic functions in their long form, which SAM reads back."""


def prebuilt_template(root: Path, out: Path) -> Path:
    """template.yaml without the image functions' Docker build metadata: `sam build` then builds only
    the zip functions, and the images come in through the InferenceImageUri/QuantizeImageUri parameters."""
    template = copy.deepcopy(load_template(root / "template.yaml"))
    for logical_id in IMAGE_FUNCTIONS:
        resource = template["Resources"][logical_id]
        resource["Metadata"] = {k: v for k, v in (resource.get("Metadata") or {}).items()
                                if k not in ("Dockerfile", "DockerContext", "DockerTag", "DockerBuildArgs")}
    # local code paths are relative to the template: point them back at the project from the new folder
    for resource in template["Resources"].values():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            value = props.get(key)
            if isinstance(value, str) and not value.startswith("s3://"):
                props[key] = os.path.relpath(root.resolve() / value, out.parent.resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.dump(template, Dumper=_Dumper, sort_keys=False, width=120))
    return out


def plan_deploy(root: Path, *, sam: str, stack: str, region: str, training_image: str, guided: bool = False,
                inference_image: str | None = None, quantize_image: str | None = None,
                python312_dir: str | None = None, extra_parameters: dict[str, str] | None = None) -> DeployPlan:
    if bool(inference_image) != bool(quantize_image):
        raise CloudError("pass both --inference-image and --quantize-image (or neither, to build them with Docker)")
    template = root / "template.yaml"
    images: dict[str, str] = {}
    if inference_image and quantize_image:
        template = prebuilt_template(root, root / ".aws-sam" / "prebuilt-images.template.yaml")
        images = {"InferenceImageUri": inference_image, "QuantizeImageUri": quantize_image}
    parameters = {**samconfig_overrides(root), **(extra_parameters or {}), "TrainingImageUri": training_image,
                  **images}
    if not images:
        _check_can_build_for(parameters.get("Architecture", "x86_64"))
    overrides = [f"{k}={v}" for k, v in sorted(parameters.items())]
    # `sam build` needs the parameters too: Architecture decides which platform the images are built for
    build = [sam, "build", "--template-file", str(template), "--parallel", "--cached", "--parameter-overrides",
             *overrides]
    deploy = [sam, "deploy", "--stack-name", stack, "--region", region, "--no-fail-on-empty-changeset",
              "--parameter-overrides", *overrides]
    if guided:
        deploy.append("--guided")
    if inference_image and quantize_image:
        # the images exist already, each in its ECR repository: name those instead of letting SAM create some
        deploy += ["--image-repositories", f"InferenceFunction={inference_image.rsplit(':', 1)[0]}",
                   f"QuantizeFunction={quantize_image.rsplit(':', 1)[0]}"]
    env = {"SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": region}
    if python312_dir:
        env["PATH"] = f"{python312_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    return DeployPlan(template=template, build=build, deploy=deploy, parameters=parameters, env=env)


_MACHINES = {"x86_64": ("x86_64", "amd64"), "arm64": ("aarch64", "arm64")}
_QEMU = {"x86_64": "qemu-x86_64", "arm64": "qemu-aarch64"}


def _check_can_build_for(architecture: str, machine: str | None = None, binfmt: Path | None = None) -> None:
    """`sam build` builds the images for the functions' architecture with Docker; for the other architecture
    every RUN step needs QEMU registered with binfmt_misc, or the build dies with `exec format error`."""
    import platform

    if architecture not in _MACHINES:
        raise CloudError(f"Architecture={architecture!r}: must be x86_64 or arm64")
    here = (machine or platform.machine()).lower()
    if here in _MACHINES[architecture]:
        return
    handler = (binfmt or Path("/proc/sys/fs/binfmt_misc")) / _QEMU[architecture]
    if not handler.exists():
        raise CloudError(
            f"Architecture={architecture} images cannot be built on this {here} machine: Docker runs their RUN "
            f"steps through QEMU, and {handler} is not registered. Register it (`docker run --privileged --rm "
            f"tonistiigi/binfmt --install {architecture}`), or build the images on a {architecture} machine "
            "and pass --inference-image and --quantize-image")


def python312_dir() -> str | None:
    """Zip functions are built for Lambda's Python 3.12: put it first on PATH for `sam build`."""
    import shutil

    for candidate in sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12")):
        return str(candidate.parent)
    found = shutil.which("python3.12")
    return str(Path(found).parent) if found else None


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
