"""A handler in the style of AWS's SAM PyTorch template: torch eager fp32, weights loaded at init.

The baseline the serving benchmark compares against: same model weights as the INT8 model,
architecture built from the recipe (from config, not the pretrained checkpoint), one thread
like a one-vCPU Lambda.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

torch.set_num_threads(1)
MODEL_DIR = Path(os.environ["TORCH_MODEL_DIR"])
_manifest = json.loads((MODEL_DIR / "manifest.json").read_text())
RECIPE = _manifest["recipe"]
LABELS = _manifest["labels"]


def _build() -> torch.nn.Module:
    if RECIPE == "digits":
        from lambdaforge.recipes.digits import _build as build_digits

        return build_digits(len(LABELS), 0.0)
    from torch import nn
    from transformers import BertConfig, BertModel

    from lambdaforge.recipes.text import encoder_dir

    class TextClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            config = BertConfig.from_pretrained(str(encoder_dir()))
            config._attn_implementation = "eager"
            self.encoder = BertModel(config, add_pooling_layer=False)
            self.dropout = nn.Dropout(0.0)
            self.head = nn.Linear(config.hidden_size, len(LABELS))

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return self.head((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9))

    return TextClassifier()


model = _build()
model.load_state_dict(load_file(str(MODEL_DIR / "model.safetensors")))
model.eval()
tokenizer: Any = None
if RECIPE == "text":
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))  # the packaged one pads to 128


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    instances = json.loads(event["body"])["instances"]
    with torch.inference_mode():
        if tokenizer is not None:
            enc = tokenizer.encode_batch(instances)
            logits = model(torch.tensor([e.ids for e in enc]), torch.tensor([e.attention_mask for e in enc]))
        else:
            logits = model(torch.tensor(np.asarray(instances, dtype=np.float32).reshape(-1, 1, 8, 8)))
    probs = torch.softmax(logits, -1)
    return {"statusCode": 200, "body": json.dumps({"predictions": [
        {"label": LABELS[int(p.argmax())], "score": float(p.max())} for p in probs]})}
