"""Hyperparameters: common ones with types, recipe ones declared by the recipe's `defaults`.

They are parsed, checked and recorded here, next to the recipes that declare them, so
training, export and the benchmarks read them one way.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lambdaforge.recipes.errors import HyperparameterError

if TYPE_CHECKING:
    from lambdaforge.recipes.base import Recipe

# The common keys the manifest records (with all of the recipe's own); the rest only steer the run.
RECORDED_KEYS = ("epochs", "batch_size", "lr", "seed")
# Keys the SageMaker SDKs and toolkits add inside the job; they are for the container, not for us. An
# uploader may never send them (`check_requested`): they reach the toolkit's command line.
RESERVED_PREFIXES = ("sagemaker_", "_")
# Keys the pipeline itself sets for the job: an uploader's value would be overwritten or would lie.
SET_BY_PIPELINE = frozenset({"recipe", "dataset_version"})
_IGNORED_PREFIXES = RESERVED_PREFIXES
_IGNORED = {"recipe"}


@dataclass(frozen=True)
class Bounds:
    """The values a numeric hyperparameter may take: [low, high], or (low, high] with `low_open`.

    Declared next to the defaults so the trigger can refuse a run that would only fail (or burn GPU
    hours) later; non-finite numbers are always out of range."""

    low: float
    high: float
    low_open: bool = False

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    def check(self, key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        # an int compares with the float bounds exactly, however large (math.isfinite would overflow)
        finite = isinstance(value, int) or math.isfinite(value)
        low_ok = value > self.low if self.low_open else value >= self.low
        if not (finite and low_ok and value <= self.high):
            raise HyperparameterError(f"hyperparameter {key}={shown(value)} is out of range {self}")


@dataclass(frozen=True)
class AtMost:
    """A rule between two hyperparameters: `key` may be at most the value of `limit` (e.g. the text recipe's
    train_layers <= encoder_layers). Declared with the bounds, so the trigger checks it without torch."""

    key: str
    limit: str
    why: str = ""

    def check(self, values: dict[str, Any]) -> None:
        if self.key not in values or self.limit not in values:
            return
        value, limit = values[self.key], values[self.limit]
        numbers = [v for v in (value, limit) if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) == 2 and value > limit:
            why = f" ({self.why})" if self.why else ""
            raise HyperparameterError(
                f"hyperparameter {self.key}={shown(value)} is more than {self.limit}={shown(limit)}{why}",
                hint=f"set {self.key} to at most {shown(limit)}, or raise {self.limit}")


def check_relations(values: dict[str, Any], relations: tuple[AtMost, ...]) -> None:
    for relation in relations:
        relation.check(values)


# The common hyperparameters' ranges (a recipe declares its own keys' ranges in `Recipe.bounds`).
COMMON_BOUNDS: dict[str, Bounds] = {
    "epochs": Bounds(1, 1000),
    "batch_size": Bounds(1, 65536),
    "lr": Bounds(0, 10, low_open=True),
    "weight_decay": Bounds(0, 1),
    "seed": Bounds(0, 2**32 - 1),
    "checkpoint_every": Bounds(1, 10_000_000),
    "max_steps": Bounds(0, 1_000_000_000),
    "nproc_per_node": Bounds(0, 64),
}


@dataclass(frozen=True)
class HyperparameterSpec:
    """What a recipe accepts beyond the common keys, readable without importing the recipe (no torch)."""

    defaults: dict[str, Any]
    bounds: dict[str, Bounds] = field(default_factory=dict)
    # rules between keys, checked after the bounds; left out of ==, which compares what a recipe declares as
    # `defaults` and `bounds` (a recipe declares its rules as the optional class attribute `relations`)
    relations: tuple[AtMost, ...] = field(default=(), compare=False)


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
        for key in ("lr", "weight_decay"):  # NaN passes `<= 0` and would train to garbage
            if not math.isfinite(getattr(self, key)):
                raise HyperparameterError(f"hyperparameter {key} must be a finite number, got {getattr(self, key)}")
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


_MAX_NUMBER_TEXT = 64  # longer text is no number a hyperparameter holds (and int() refuses 4,300 digits)


def shown(value: Any, limit: int = 40) -> str:
    """The value as an error message names it: its repr, cut short (an uploader's number may have
    thousands of digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"<an integer of {math.floor(math.log10(abs(value))) + 1} digits>"  # str() may refuse it
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _coerce_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {shown(value)}")


def _coerce(key: str, value: Any, like: Any) -> Any:
    try:
        if isinstance(like, bool):
            return _coerce_bool(value)
        if isinstance(like, int | float) and isinstance(value, str) and len(value) > _MAX_NUMBER_TEXT:
            raise ValueError(f"expected {type(like).__name__}, got {len(value)} characters")
        if isinstance(like, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"expected an integer, got {value!r}")
            return int(value)
        if isinstance(like, float):
            return float(value)
        return str(value)
    except OverflowError as exc:  # float(10**400), int(inf): a number no hyperparameter can hold
        raise HyperparameterError(f"hyperparameter {key}={shown(value)}: the number is too large") from exc
    except (TypeError, ValueError) as exc:
        raise HyperparameterError(f"hyperparameter {key}={shown(value)}: {exc}") from exc


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
    hp = Hyperparameters(**values, extra=extra)
    _check_bounds({**values, **extra}, {**COMMON_BOUNDS, **recipe.bounds})
    # a recipe may declare `relations` beside its `bounds` (the built-in text recipe does)
    check_relations({**values, **extra}, tuple(getattr(recipe, "relations", ())))
    return hp


def _check_bounds(values: dict[str, Any], bounds: dict[str, Bounds]) -> None:
    for key, value in values.items():
        if key in bounds:
            bounds[key].check(key, value)


def check_requested(recipe: str, raw: dict[str, Any], spec: HyperparameterSpec | None, *,
                    source: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """What an uploader asks for (a `_READY` marker, the stack's TrainingHyperparameters), checked at the
    trigger before any run starts; returns the values typed. Unlike `parse_hyperparameters` (inside the
    job, where the toolkit adds its own keys), reserved keys are refused here, as are unknown keys, wrong
    types and values out of range, each naming the key. `spec` None: the recipe cannot be imported here
    (a custom one whose dependencies only the job has), so only the common keys are checked and its
    own keys are left to the job. `base`: values `raw` is laid over (the stack's, under a marker's), so the
    relations between keys are checked on what the job will get."""
    common = Hyperparameters()
    known: dict[str, Any] = {name: getattr(common, name) for name in _COMMON if name not in SET_BY_PIPELINE}
    bounds = dict(COMMON_BOUNDS)
    if spec is not None:
        known.update(spec.defaults)
        bounds.update(spec.bounds)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith(RESERVED_PREFIXES):
            raise HyperparameterError(f"{source}: hyperparameter {key!r} is reserved for SageMaker and its "
                                      "toolkit; it is refused")
        if key in SET_BY_PIPELINE:
            raise HyperparameterError(f"{source}: hyperparameter {key!r} is set by the pipeline; it is refused")
        if key not in known:
            if spec is None:
                out[key] = value  # the job's own check applies (it knows the recipe)
                continue
            raise HyperparameterError(f"{source}: unknown hyperparameter {key!r} for recipe {recipe!r}",
                                      hint=f"known: {', '.join(sorted(known))}")
        like = known[key]
        if isinstance(value, bool) and not isinstance(like, bool):
            raise HyperparameterError(f"{source}: hyperparameter {key}={shown(value)}: expected "
                                      f"{type(like).__name__}, got a boolean")
        if not isinstance(value, str | int | float | bool):
            raise HyperparameterError(f"{source}: hyperparameter {key}={shown(value)}: expected "
                                      f"{type(like).__name__}")
        try:
            out[key] = _coerce(key, value, like)
            _check_bounds({key: out[key]}, bounds)
        except HyperparameterError as exc:
            raise HyperparameterError(f"{source}: {exc.message}") from exc
    if spec is not None:  # what was asked for, with the recipe's defaults for the rest
        try:
            check_relations({**spec.defaults, **(base or {}), **out}, spec.relations)
        except HyperparameterError as exc:
            raise HyperparameterError(f"{source}: {exc.message}", hint=exc.hint) from exc
    return out


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
