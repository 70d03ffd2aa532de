"""Measuring images: the runtime payload (installed dependencies + code + model) against a budget."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lambdaforge.bundle.build import SlimSpec, dir_size, install_deps

DEFAULT_BUDGET_MB = 160


@dataclass(frozen=True)
class Payload:
    deps_bytes: int
    code_bytes: int
    model_bytes: int
    budget_bytes: int
    bytecode_bytes: int = 0  # the .pyc files inside deps_bytes

    @property
    def total_bytes(self) -> int:
        return self.deps_bytes + self.code_bytes + self.model_bytes

    @property
    def within_budget(self) -> bool:
        return self.total_bytes <= self.budget_bytes


def payload(root: Path, function: str, model_dir: Path | None, cache_root: Path,
            budget_mb: float = DEFAULT_BUDGET_MB, python: str | None = None) -> Payload:
    packaging_dir = root / "packaging" / function
    spec = SlimSpec.read(packaging_dir / "slim.txt")
    deps = install_deps(packaging_dir / "requirements.txt", spec, cache_root, python)
    code = (dir_size(root / "src" / "lambdaforge", without_caches=True)
            + dir_size(root / "functions" / function, without_caches=True))
    return Payload(deps_bytes=dir_size(deps), code_bytes=code,
                   model_bytes=dir_size(model_dir) if model_dir else 0, budget_bytes=int(budget_mb * 1024 * 1024),
                   bytecode_bytes=sum(p.stat().st_size for p in deps.rglob("*.pyc")))
