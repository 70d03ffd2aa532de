"""The quantize step: the training job's model.tar.gz in, a gated, versioned model directory out.

The tarball is untrusted: size-limited, safely extracted, checksums verified. Only a model that
passes the accuracy gate gets a version, and versions are written to new keys only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from lambdaforge.artifact import ModelDir, open_model_dir, safe_extract
from lambdaforge.aws import split_s3_uri
from lambdaforge.pipeline.errors import ArtifactTooLargeError, PipelineError
from lambdaforge.pipeline.payloads import QuantizeRequest, QuantizeResult
from lambdaforge.pipeline.settings import PipelineSettings
from lambdaforge.quantize import from_mode, quantize_model_dir
from lambdaforge.quantize.report import QuantizationReport
from lambdaforge.registry import Catalog, VersionRecord
from lambdaforge.s3transfer import download_file, upload_folder


class QuantizeStep:
    def __init__(self, settings: PipelineSettings, *, s3: Any = None, catalog: Catalog | None = None) -> None:
        from lambdaforge.aws import client

        settings.need("artifacts_bucket", "registry_table")
        self.settings = settings
        self.s3 = s3 or client("s3")
        self.catalog = catalog or Catalog(settings.registry_table)

    def run(self, req: QuantizeRequest) -> QuantizeResult:
        existing = self.catalog.version_for_job(req.recipe, req.training_job)
        if existing is not None:  # a retried step: the version already exists, say so again
            return QuantizeResult(gate_passed=True, gate_reason="already quantized", report_uri=existing.report_uri
                                  or "", version=existing.version, model_uri=existing.model_uri,
                                  chosen=existing.quantization, metrics=existing.metrics)
        cfg = from_mode(self.settings.quant_mode, max_drop=self.settings.max_accuracy_drop,
                        min_metric=self.settings.min_accuracy)
        with tempfile.TemporaryDirectory(prefix="lf-quantize-") as tmp_name:
            tmp = Path(tmp_name)
            tarball = self._download(req.model_artifact, tmp / "model.tar.gz")
            model = safe_extract(tarball, tmp / "trained", max_bytes=self.settings.max_artifact_bytes * 4)
            md = open_model_dir(model)  # checksums verified on the way in
            if md.manifest.recipe != req.recipe:
                raise PipelineError(f"{req.model_artifact}: the model is for recipe {md.manifest.recipe!r}, "
                                    f"not {req.recipe!r}")
            out = tmp / "quantized"
            quantized = quantize_model_dir(md, out, cfg)
            report = quantized.report
            if quantized.model_dir is None:
                report_uri = self._upload_dir(out, f"reports/{req.recipe}/{req.training_job}/")
                return QuantizeResult(gate_passed=False, gate_reason=report.gate_reason, report_uri=report_uri
                                      + "quantization_report.json", chosen=report.chosen)
            version = self.catalog.allocate_version(req.recipe)
            prefix = f"models/{req.recipe}/v{version:06d}/"
            model_uri = self._upload_dir(out, prefix)
            record = VersionRecord(
                recipe=req.recipe, version=version, model_uri=model_uri,
                report_uri=model_uri + "quantization_report.json", metrics=_metrics(quantized.model_dir, report),
                quantization=report.chosen, training_job=req.training_job,
                dataset_version=req.dataset_version or md.manifest.training.dataset_version,
                execution=req.execution)
            self.catalog.put_version(record)
        return QuantizeResult(gate_passed=True, gate_reason=report.gate_reason, report_uri=record.report_uri or "",
                              version=version, model_uri=model_uri, chosen=report.chosen, metrics=record.metrics)

    def _download(self, uri: str, dest: Path) -> Path:
        bucket, key = split_s3_uri(uri)
        head = self.s3.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] > self.settings.max_artifact_bytes:
            raise ArtifactTooLargeError(f"{uri}: {head['ContentLength']} bytes is over the limit of "
                                        f"{self.settings.max_artifact_bytes}")
        return download_file(self.s3, uri, dest)

    def _upload_dir(self, folder: Path, prefix: str) -> str:
        """Write every file under a new prefix; refuse to replace anything that is already there."""
        bucket = self.settings.artifacts_bucket
        upload_folder(self.s3, folder, bucket, prefix, new_keys_only=True)
        return f"s3://{bucket}/{prefix}"


def _metrics(md: ModelDir, report: QuantizationReport) -> dict[str, float]:
    keep = {k: float(v) for k, v in md.manifest.metrics.items() if isinstance(v, int | float)}
    keep["size_bytes"] = float(md.model_path.stat().st_size)
    if report.chosen_result.latency_ms_p50 is not None:
        keep["latency_ms_p50"] = float(report.chosen_result.latency_ms_p50)
    return keep
