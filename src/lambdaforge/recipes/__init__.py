"""Recipes: what to train. `get_recipe` finds built-in, entry-point and `module:Class` recipes."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from lambdaforge.recipes.base import Dataset, Hyperparameters, Recipe
from lambdaforge.recipes.errors import DataError, RecipeError

ENTRY_POINT_GROUP = "lambdaforge.recipes"
BUILTIN = {"digits": "lambdaforge.recipes.digits:DigitsRecipe", "text": "lambdaforge.recipes.text:TextRecipe"}


def _load(spec: str) -> type[Recipe]:
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


__all__ = ["DataError", "Dataset", "Hyperparameters", "Recipe", "RecipeError", "get_recipe", "recipe_names"]
