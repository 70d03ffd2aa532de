"""Hyperparameters: common ones with types, recipe ones declared by the recipe's `defaults`."""

from __future__ import annotations

import dataclasses
from typing import Any

from lambdaforge.recipes.base import Hyperparameters, Recipe
from lambdaforge.training.errors import HyperparameterError

# Keys the SageMaker SDKs and toolkits add; they are for the container, not for us.
_IGNORED_PREFIXES = ("sagemaker_", "_")
_IGNORED = {"recipe"}
_COMMON = {f.name: f for f in dataclasses.fields(Hyperparameters) if f.name != "extra"}


def _coerce(key: str, value: Any, like: Any) -> Any:
    try:
        if isinstance(like, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes"):
                return True
            if text in ("false", "0", "no"):
                return False
            raise ValueError(f"expected true or false, got {value!r}")
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
    for key in ("epochs", "batch_size"):
        if values[key] < 1:
            raise HyperparameterError(f"hyperparameter {key} must be at least 1, got {values[key]}")
    if values["lr"] <= 0:
        raise HyperparameterError(f"hyperparameter lr must be positive, got {values['lr']}")
    if values["checkpoint_every"] < 1:
        raise HyperparameterError("hyperparameter checkpoint_every must be at least 1 step")
    return Hyperparameters(**values, extra=extra)


def parse_cli_pairs(pairs: list[str]) -> dict[str, str]:
    """`key=value` strings from the command line."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise HyperparameterError(f"--hp {pair!r} is not key=value")
        out[key.strip()] = value.strip()
    return out
