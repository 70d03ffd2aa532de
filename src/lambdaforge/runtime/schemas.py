"""Request and response models of the inference API (pydantic; they are the OpenAPI schema).

Not on the cold path: the handler builds them when a body needs validation or the docs are asked
for (`http.plain_request` serves plainly valid requests without them, with the same answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from lambdaforge.runtime.http import DEFAULT_TOP_K, MAX_TOP_K, predict_body

if TYPE_CHECKING:
    from lambdaforge.runtime.predictor import Prediction

TensorItem = Annotated[list[Any], Field(description="numbers in the model's input shape, or a flat list")]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"instances": ["my package has not arrived"]}, {"instances": [[0] * 64]}]})

    # strict: "3" is not an integer and 5 is not a string, as the document says (pydantic's lax mode
    # would take both, and a schema-invalid request would be served)
    instances: list[StrictStr | TensorItem] = Field(
        min_length=1, description="a batch: strings for text models, number arrays for tensor models")
    top_k: int = Field(default=DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="how many labels to return per instance")

    @field_validator("top_k", mode="before")
    @classmethod
    def _a_json_integer(cls, value: Any) -> Any:
        """JSON Schema's integer: 3 and 3.0, not "3" or true (which pydantic's lax mode would take)."""
        if isinstance(value, bool | str):
            raise ValueError("must be an integer")
        return value


class LabelScore(BaseModel):
    label: str
    score: float


class PredictionOut(BaseModel):
    label: str
    index: int
    score: float
    top_k: list[LabelScore]


class PredictResponse(BaseModel):
    model: dict[str, str]
    predictions: list[PredictionOut]
    latency_ms: float

    @classmethod
    def build(cls, info: dict[str, Any], results: Sequence[Prediction], latency_ms: float) -> PredictResponse:
        """The answer for a batch: the model that served it (`Predictor.describe()`) and one entry per instance."""
        return cls.model_validate(predict_body(info, results, latency_ms))


class HealthResponse(BaseModel):
    status: str
    recipe: str
    version: str
