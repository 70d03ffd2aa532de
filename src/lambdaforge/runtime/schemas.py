"""Request and response models of the inference API (pydantic; they are the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

TensorItem = Annotated[list[Any], Field(description="numbers in the model's input shape, or a flat list")]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"instances": ["my package has not arrived"]}, {"instances": [[0] * 64]}]})

    instances: list[str | TensorItem] = Field(
        min_length=1, description="a batch: strings for text models, number arrays for tensor models")
    top_k: int = Field(default=3, ge=1, le=20, description="how many labels to return per instance")


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


class HealthResponse(BaseModel):
    status: str
    recipe: str | None = None
    version: str | None = None
    detail: str | None = None
