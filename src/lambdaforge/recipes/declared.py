"""The built-in recipes' hyperparameters: defaults and ranges, importable without numpy or torch.

The trigger checks an uploader's hyperparameters against these before any run starts (it has no
torch to import the recipes with); the recipes take their `defaults` and `bounds` from here, so
the two cannot drift.
"""

from __future__ import annotations

from lambdaforge.recipes.hparams import AtMost, Bounds, HyperparameterSpec

ENCODER_LAYERS = 6  # all-MiniLM-L6-v2's transformer layers

DIGITS = HyperparameterSpec(
    defaults={"epochs": 25, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4, "checkpoint_every": 50,
              "dropout": 0.25, "augment": True},
    bounds={"dropout": Bounds(0, 0.95)},
)
TEXT = HyperparameterSpec(
    defaults={"epochs": 12, "batch_size": 32, "lr": 3e-3, "weight_decay": 1e-4, "checkpoint_every": 40,
              "train_layers": 0, "encoder_layers": ENCODER_LAYERS, "dropout": 0.1},
    # encoder_layers: keep the encoder's first N layers (a smaller model); train_layers: fine-tune the last N
    # of those (0: the head only)
    bounds={"train_layers": Bounds(0, ENCODER_LAYERS), "encoder_layers": Bounds(1, ENCODER_LAYERS),
            "dropout": Bounds(0, 0.95)},
    relations=(AtMost("train_layers", "encoder_layers", "only the encoder layers kept can be trained"),),
)
BUILTIN: dict[str, HyperparameterSpec] = {"digits": DIGITS, "text": TEXT}
