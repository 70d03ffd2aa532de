"""The quantize step: the training job's model.tar.gz in, a gated, versioned model directory out.

The tarball is untrusted: size-limited, safely extracted, checksums verified. Only a model that
passes the accuracy gate gets a version, and versions are written to new keys only. The gate here is
champion/challenger: besides fp32, a candidate must reach the floor (the higher of the recipe's own and
MIN_ACCURACY) and lose at most MAX_ACCURACY_DROP against the live model, on the candidate's held-out rows
and on the live model's own. A candidate with a new contract (labels, inputs, tokenizer, metric) is
refused unless ALLOW_CONTRACT_CHANGE is set.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from lambdaforge import envvars
from lambdaforge.artifact import ModelDir, check_archive, open_model_dir, safe_extract
from lambdaforge.aws import split_s3_uri
from lambdaforge.errors import LambdaforgeError
from lambdaforge.pipeline.errors import (
    ArtifactTooLargeError,
    EphemeralStorageError,
    LiveModelError,
    PipelineError,
)
from lambdaforge.pipeline.payloads import QuantizeRequest, QuantizeResult
from lambdaforge.pipeline.settings import PipelineSettings
from lambdaforge.quantize import LiveGate, LiveModel, from_mode, quantize_model_dir
from lambdaforge.quantize.report import QuantizationReport
from lambdaforge.recipes import RecipeError, get_recipe
from lambdaforge.registry import Catalog, VersionRecord
from lambdaforge.s3transfer import download_file, download_prefix, upload_folder

# /tmp written per byte the artifact unpacks to: the extracted model, the quantized folder (the fp32 files
# again), the candidates' work folder (an encoder's fused fp32 graph, fp32-sized, and up to five INT8 graphs
# of a quarter each: about 2.25 together) and the live model fetched for the comparison (possibly fp32). The
# declared size also counts the torch weights, which none of these copies, so 5 holds with room.
TMP_BYTES_PER_UNPACKED_BYTE = 5


def tmp_room(folder: Path, ephemeral_storage_mb: int) -> int:
    """Bytes a step may still write under `folder`: what its file system has free, and no more than the
    function's ephemeral storage less what the step already wrote there (the local cloud shares one disk)."""
    free = shutil.disk_usage(folder).free
    if ephemeral_storage_mb <= 0:
        return free
    used = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return min(free, ephemeral_storage_mb * (1 << 20) - used)


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
        floor, floor_source = recipe_floor(req.recipe, self.settings.min_accuracy)
        cfg = from_mode(self.settings.quant_mode, max_drop=self.settings.max_accuracy_drop, min_metric=floor,
                        min_agreement=self.settings.min_agreement)
        with tempfile.TemporaryDirectory(prefix="lf-quantize-") as tmp_name:
            tmp = Path(tmp_name)
            tarball = self._download(req.model_artifact, tmp / "model.tar.gz")
            self._check_room(req.model_artifact, tarball, tmp)
            model = safe_extract(tarball, tmp / "trained", max_bytes=self.settings.max_artifact_bytes * 4)
            md = open_model_dir(model)  # checksums verified on the way in
            if md.manifest.recipe != req.recipe:
                raise PipelineError(f"{req.model_artifact}: the model is for recipe {md.manifest.recipe!r}, "
                                    f"not {req.recipe!r}")
            live_gate = LiveGate(live=self._live_model(req.recipe, tmp / "live"), floor_source=floor_source,
                                 allow_contract_change=self.settings.allow_contract_change)
            out = tmp / "quantized"
            quantized = quantize_model_dir(md, out, cfg, live_gate=live_gate)
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

    def _live_model(self, recipe: str, dest: Path) -> LiveModel | None:
        """The model alias `live` serves, as the registry records it, verified; None before the first promotion."""
        record = self.catalog.live_model(recipe)
        if record is None:
            return None
        name = f"{recipe}-v{record.version}"
        try:
            download_prefix(self.s3, record.model_uri, dest, max_bytes=self.settings.max_artifact_bytes * 4)
            return LiveModel(model_dir=open_model_dir(dest), name=name)
        except LambdaforgeError as exc:
            raise LiveModelError(f"the live model {name} ({record.model_uri}) cannot be read, so the candidate "
                                 f"cannot be compared with it: {exc}") from exc

    def _download(self, uri: str, dest: Path) -> Path:
        bucket, key = split_s3_uri(uri)
        head = self.s3.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] > self.settings.max_artifact_bytes:
            raise ArtifactTooLargeError(f"{uri}: {head['ContentLength']} bytes is over the limit of "
                                        f"{self.settings.max_artifact_bytes}")
        return download_file(self.s3, uri, dest)

    def _check_room(self, uri: str, tarball: Path, tmp: Path) -> None:
        """Refuse, before extracting, an artifact that would fill /tmp: what it declares it unpacks to
        (headers read, data skipped) and the step's outputs must fit in what the function has left."""
        declared = sum(m.size for m in check_archive(tarball, max_bytes=self.settings.max_artifact_bytes * 4))
        need = declared * TMP_BYTES_PER_UNPACKED_BYTE
        room = tmp_room(tmp, self.settings.ephemeral_storage_mb)
        if need > room:
            raise EphemeralStorageError(
                f"{uri}: unpacks to {declared} bytes; with the quantized model and the live model beside it "
                f"the step needs about {need} bytes of /tmp and has {room} (the function's EphemeralStorage, "
                f"{envvars.EPHEMERAL_STORAGE_MB}={self.settings.ephemeral_storage_mb or 'unset'})")

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


def recipe_floor(recipe: str, min_accuracy: float) -> tuple[float, str]:
    """The lowest metric a new model may have: the recipe's own floor, raised (never lowered) by MIN_ACCURACY.

    A recipe that is not installed here (a custom one that travels only with the training job)
    gets the framework's default floor, `Recipe.min_metric`.
    """
    from lambdaforge.recipes.base import Recipe

    try:
        own, whose = get_recipe(recipe).min_metric, f"recipe {recipe}"
    except RecipeError:
        own, whose = Recipe.min_metric, f"the default (recipe {recipe} is not installed here)"
    floor = max(own, min_accuracy)
    return floor, f"the higher of {whose} {own:.4f} and MIN_ACCURACY {min_accuracy:.4f}"
