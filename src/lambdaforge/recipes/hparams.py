"""Hyperparameters: common ones with types, recipe ones declared by the recipe's `defaults`.

They are parsed, checked and recorded here, next to the recipes that declare them, so
training, export and the benchmarks read them one way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lambdaforge.recipes.errors import HyperparameterError

if TYPE_CHECKING:
    from lambdaforge.recipes.base import Recipe

# The common keys the manifest records (with all of the recipe's own); the rest only steer the run.
RECORDED_KEYS = ("epochs", "batch_size", "lr", "seed")
# Keys the SageMaker SDKs and toolkits add; they are for the container, not for us.
_IGNORED_PREFIXES = ("sagemaker_", "_")
_IGNORED = {"recipe"}


@dataclass(frozen=True)
class Hyperparameters:
    """Common training knobs; recipe-specific ones live in `extra` (declared by `Recipe.defaults`)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    checkpoint_every: int = 100  # steps
    max_steps: int = 0  # 0: no cap
    nproc_per_node: int = 0  # 0: one process per GPU, or 1 on CPU
    bf16: bool = True  # autocast on CUDA; ignored on CPU
    dataset_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise HyperparameterError(f"hyperparameter {key} must be at least 1, got {getattr(self, key)}")
        if self.lr <= 0:
            raise HyperparameterError(f"hyperparameter lr must be positive, got {self.lr}")
        if self.checkpoint_every < 1:
            raise HyperparameterError("hyperparameter checkpoint_every must be at least 1 step")

    def get(self, key: str) -> Any:
        return self.extra[key]

    def recorded(self) -> dict[str, Any]:
        """What the manifest keeps, enough to rebuild the model from its weights."""
        return {**{key: getattr(self, key) for key in RECORDED_KEYS}, **self.extra}


_COMMON = {f.name: f for f in dataclasses.fields(Hyperparameters) if f.name != "extra"}


def _coerce_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _coerce(key: str, value: Any, like: Any) -> Any:
    try:
        if isinstance(like, bool):
            return _coerce_bool(value)
        if isinstance(like, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"expected an integer, got {value!r}")
            return int(value)
        if isinstance(like, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise HyperparameterError(f"hyperparameter {key}={value!r}: {exc}") from exc


def parse_hyperparameters(recipe: Recipe, raw: dict[str, Any]) -> Hyperparameters:
    """Defaults, then the recipe's defaults, then what the job passed; unknown keys are an error."""
    base = Hyperparameters()
    values: dict[str, Any] = {name: getattr(base, name) for name in _COMMON}
    extra: dict[str, Any] = {}
    for key, value in recipe.defaults.items():
        if key in _COMMON:
            values[key] = value
        else:
            extra[key] = value
    for key, value in raw.items():
        if key in _IGNORED or key.startswith(_IGNORED_PREFIXES):
            continue
        if key in _COMMON:
            values[key] = _coerce(key, value, getattr(base, key))
        elif key in extra:
            extra[key] = _coerce(key, value, extra[key])
        else:
            known = sorted([*_COMMON, *extra])
            raise HyperparameterError(f"unknown hyperparameter {key!r} for recipe {recipe.name!r}",
                                      hint=f"known: {', '.join(known)}")
    return Hyperparameters(**values, extra=extra)


def from_recorded(recipe: Recipe, recorded: dict[str, Any]) -> Hyperparameters:
    """The hyperparameters a manifest recorded, read back for `recipe` (keys it no longer knows are dropped)."""
    known = set(recipe.defaults) | set(RECORDED_KEYS)
    return parse_hyperparameters(recipe, {k: v for k, v in recorded.items() if k in known})


def parse_cli_pairs(pairs: list[str]) -> dict[str, str]:
    """`key=value` strings from the command line."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise HyperparameterError(f"--hp {pair!r} is not key=value")
        out[key.strip()] = value.strip()
    return out
