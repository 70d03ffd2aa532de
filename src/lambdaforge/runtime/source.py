"""Where the served model comes from, and getting it onto local disk, verified.

Order: an explicit location, then MODEL_URI (a published version pins one), then the
registry's live model (REGISTRY_TABLE + RECIPE: what a fresh code deploy serves, so
`sam deploy` never reverts a promotion), then the model baked into the image (MODEL_DIR,
default /opt/ml/model).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from lambdaforge import envvars
from lambdaforge.runtime.errors import ModelNotReadyError, RuntimeModelError
from lambdaforge.runtime.modelfiles import MANIFEST_NAME, ModelDir, open_model_dir

if TYPE_CHECKING:
    from lambdaforge import artifact

BAKED_MODEL_DIR = "/opt/ml/model"
DEFAULT_CACHE = "/tmp/lambdaforge/models"  # noqa: S108 - Lambda's only writable place is /tmp
MAX_MODEL_BYTES = 2 << 30


def resolve_location(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    uri = os.environ.get(envvars.MODEL_URI, "").strip()
    if uri:
        return uri
    table, recipe = os.environ.get(envvars.REGISTRY_TABLE), os.environ.get(envvars.RECIPE)
    if table and recipe:
        from lambdaforge.registry import Catalog

        live = Catalog(table).live_model(recipe)
        if live is None:
            raise ModelNotReadyError(f"no model has been promoted for recipe {recipe!r} yet")
        return live.model_uri
    baked = os.environ.get(envvars.MODEL_DIR, BAKED_MODEL_DIR)
    if (Path(baked) / MANIFEST_NAME).is_file():
        return baked
    raise ModelNotReadyError(
        "no model configured: set MODEL_URI (a directory or s3:// URI), or REGISTRY_TABLE and RECIPE, "
        f"or bake one into {baked}")


def _download_s3(uri: str, cache_root: Path) -> Path:
    from lambdaforge.aws import client
    from lambdaforge.errors import S3TransferError
    from lambdaforge.s3transfer import download_prefix

    target = cache_root / hashlib.sha256(uri.encode()).hexdigest()[:24]
    if (target / MANIFEST_NAME).is_file():
        return target  # a warm container already has it; it is verified again on open
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=".download-"))
    try:
        download_prefix(client("s3"), uri.rstrip("/") + "/", tmp, max_bytes=MAX_MODEL_BYTES)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except S3TransferError as exc:  # no objects, too large, or a key that escapes: the model is not servable
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeModelError(str(exc)) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def fetch(location: str, cache_dir: str | None = None) -> ModelDir | artifact.ModelDir:
    """A verified local model directory for a directory path or an s3:// prefix.

    Read without pydantic when its manifest is canonical (`modelfiles`), else by `lambdaforge.artifact`.
    """
    try:
        if location.startswith("s3://"):
            cache_root = Path(envvars.setting(cache_dir, envvars.CACHE_DIR, DEFAULT_CACHE))
            return open_model_dir(_download_s3(location, cache_root))
        return open_model_dir(location)
    except RuntimeModelError:
        raise
    except Exception as exc:  # boto errors, permissions: the message is what a person needs
        from lambdaforge.artifact.errors import ArtifactError  # raised only by the full reader, so imported

        if isinstance(exc, ArtifactError):
            raise RuntimeModelError(f"model at {location} failed verification: {exc}") from exc
        raise RuntimeModelError(f"cannot fetch model from {location}: {type(exc).__name__}: {exc}") from exc
