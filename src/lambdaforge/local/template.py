"""template.yaml, read and translated the way SAM does it, for the local cloud and the infra checks.

SAM's own translator (the `samtranslator` library) turns the template into CloudFormation; local
code paths are swapped for placeholder S3 URIs first (as `sam package` would upload them), and the
real paths are kept so local executors can run the code that the template points at.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambdaforge.local.errors import TemplateError
from lambdaforge.project import load_template

PLACEHOLDER_BUCKET = "lambdaforge-local-code"
_URI_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}


@dataclass(frozen=True)
class Translated:
    """The CloudFormation form of the template, plus where each piece of local code lives."""

    source: dict[str, Any]
    cfn: dict[str, Any]
    root: Path  # the project folder (template.yaml's folder)
    code_paths: dict[str, Path] = field(default_factory=dict)  # SAM logical id -> local folder or file

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.cfn["Resources"]
        return resources

    def resource_types(self) -> set[str]:
        return {r["Type"] for r in self.resources.values()}


def translate(template_path: Path, parameter_values: dict[str, Any] | None = None) -> Translated:
    """SAM -> CloudFormation with samtranslator, local paths swapped for placeholders first."""
    from samtranslator.translator.transform import transform

    template_path = Path(template_path)
    root = template_path.parent
    source = load_template(template_path)
    sam = copy.deepcopy(source)
    code_paths: dict[str, Path] = {}
    for logical_id, resource in sam["Resources"].items():
        prop = _URI_PROPERTIES.get(resource.get("Type", ""))
        props = resource.get("Properties") or {}
        if prop and isinstance(props.get(prop), str) and not props[prop].startswith("s3://"):
            local = (root / props[prop]).resolve()
            if not local.exists():
                raise TemplateError(f"{template_path}: {logical_id}.{prop} points at {props[prop]}, "
                                    "which does not exist")
            code_paths[logical_id] = local
            props[prop] = f"s3://{PLACEHOLDER_BUCKET}/{logical_id}"
        if resource.get("Type") == "AWS::Serverless::Function" and props.get("PackageType") == "Image":
            metadata = resource.get("Metadata") or {}
            function_dir = (metadata.get("DockerBuildArgs") or {}).get("FUNCTION_DIR")
            if function_dir:
                code_paths[logical_id] = (root / function_dir).resolve()
            uri = props.get("ImageUri")
            if uri is None or (isinstance(uri, dict) and "Fn::If" in uri):
                # what `sam build` would set after building the image
                props["ImageUri"] = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{logical_id.lower()}:local"

    class _NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    try:
        cfn = transform(sam, parameter_values or {}, _NoManagedPolicies())
    except Exception as exc:
        raise TemplateError(f"{template_path}: SAM cannot translate it: {exc}") from exc
    return Translated(source=source, cfn=cfn, root=root.resolve(), code_paths=code_paths)
