"""The runtime refuses an input whose logits overflow, instead of answering NaN scores (which are not JSON)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.unit.test_champion_gate import write_model


def test_an_input_that_overflows_the_model_is_a_422_not_a_nan_score(tmp_path: Path) -> None:
    """A tensor model without value bounds: inputs near float32's limit sum past it inside the model. The
    answer would hold NaN scores (not JSON); it is refused naming the instance instead."""
    from lambdaforge.runtime.errors import InvalidInputError
    from lambdaforge.runtime.predictor import Predictor

    md = write_model(tmp_path / "model", np.ones((4, 3), dtype=np.float32))
    predictor = Predictor(md, warm_up=False)
    assert predictor.predict([[1.0, 0.0, 0.0, 0.0]])[0].label in ("a", "b", "c")
    with pytest.raises(InvalidInputError, match=r"instances\[1\]: the model's output is not finite"):
        predictor.predict([[0.0] * 4, [3e38] * 4])
