"""Recipes: what to train. `get_recipe` finds built-in, entry-point and `module:Class` recipes.

This module imports nothing heavy: the trigger function (no numpy, no torch) reads the catalog.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from lambdaforge.recipes.errors import DataError, RecipeError

if TYPE_CHECKING:
    from lambdaforge.recipes.base import Recipe
    from lambdaforge.recipes.hparams import HyperparameterSpec

ENTRY_POINT_GROUP = "lambdaforge.recipes"
# name -> (class, data file suffixes the data bucket accepts for it)
CATALOG: dict[str, tuple[str, tuple[str, ...]]] = {
    "digits": ("lambdaforge.recipes.digits:DigitsRecipe", (".csv",)),
    "text": ("lambdaforge.recipes.text:TextRecipe", (".csv",)),
}
BUILTIN = {name: spec for name, (spec, _) in CATALOG.items()}


def _load(spec: str) -> type[Recipe]:
    from lambdaforge.recipes.base import Recipe

    module_name, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise RecipeError(f"recipe {spec!r} cannot be imported: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, Recipe)):
        raise RecipeError(f"{spec!r} is not a subclass of lambdaforge.recipes.Recipe")
    return obj


def recipe_names() -> list[str]:
    names = set(BUILTIN)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def data_suffixes() -> dict[str, tuple[str, ...]]:
    """Recipe name -> accepted data suffixes, without importing any recipe (entry points: .csv)."""
    out = {name: suffixes for name, (_, suffixes) in CATALOG.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        out.setdefault(ep.name, (".csv",))
    return out


def hyperparameter_spec(name: str) -> HyperparameterSpec | None:
    """What recipe `name` accepts beyond the common hyperparameters, without importing torch for the
    built-in ones; None when the recipe cannot be imported here (its own keys are left to the job)."""
    from lambdaforge.recipes.declared import BUILTIN as DECLARED
    from lambdaforge.recipes.hparams import HyperparameterSpec

    if name in DECLARED:
        return DECLARED[name]
    try:
        recipe = get_recipe(name)
    except RecipeError:
        return None
    return HyperparameterSpec(defaults=dict(recipe.defaults), bounds=dict(recipe.bounds))


def get_recipe(name: str) -> Recipe:
    """A recipe by name (built-in or entry point) or by `package.module:Class`."""
    if ":" in name:
        return _load(name)()
    if name in BUILTIN:
        return _load(BUILTIN[name])()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return _load(ep.value)()
    raise RecipeError(f"unknown recipe {name!r}", hint=f"known recipes: {', '.join(recipe_names())}")


def __getattr__(name: str) -> Any:
    if name in ("Recipe", "Dataset"):
        from lambdaforge.recipes import base

        return getattr(base, name)
    if name == "Hyperparameters":
        from lambdaforge.recipes.hparams import Hyperparameters

        return Hyperparameters
    raise AttributeError(name)


__all__ = ["BUILTIN", "CATALOG", "DataError", "RecipeError", "data_suffixes", "get_recipe", "hyperparameter_spec",
           "recipe_names"]
