"""The API's OpenAPI document, made from the served model's manifest.

A generic document ("instances: a list of anything") lets a client send a request that is valid
by the schema and still refused; this one is exact. A tensor model's instance is its shape, the
squeezed shape or the flat list, with the manifest's value range; a text model's is a string with
its length limit. Labels are an enum, the examples are the model's own sample rows, and every
refusal is the one error schema. What the document accepts, the predictor accepts, and the
schemathesis test holds the two together.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

from lambdaforge.runtime.http import MAX_TOP_K, TITLE, VERSION
from lambdaforge.runtime.predictor import FLOAT32_MAX, accepted_shapes

if TYPE_CHECKING:
    from lambdaforge import artifact
    from lambdaforge.runtime import modelfiles
    from lambdaforge.runtime.predictor import Predictor

    Manifest = modelfiles.Manifest | artifact.Manifest

_REF = "#/components/schemas/"

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error", "type": "object", "required": ["error", "message"], "additionalProperties": False,
    "description": "Every refusal: a code, a sentence naming the problem, and the field when there is one.",
    "properties": {
        "error": {"type": "string", "description": "a stable code, e.g. invalid_input"},
        "message": {"type": "string"},
        "field": {"type": "string", "description": "where the problem is, e.g. instances[2]"},
        "details": {"type": "array", "items": {
            "type": "object", "required": ["field", "reason"], "additionalProperties": False,
            "properties": {"field": {"type": "string"}, "reason": {"type": "string"}}}},
    },
}
# API Gateway's own answers (a body over its 10 MB limit, a refused token) have its shape, not ours.
GATEWAY_ERROR_SCHEMA: dict[str, Any] = {
    "title": "GatewayError", "type": "object", "required": ["message"],
    "properties": {"message": {"type": "string"}}}
HEALTH_SCHEMA: dict[str, Any] = {
    "title": "Health", "type": "object", "required": ["status", "recipe", "version"], "additionalProperties": False,
    "properties": {"status": {"const": "ok"}, "recipe": {"type": "string"}, "version": {"type": "string"}}}
ERROR_DESCRIPTIONS = {400: "malformed JSON, or JSON past the parser's limits", 404: "no such route",
                      405: "the route does not take this method", 413: "body too large",
                      415: "not a JSON content type", 422: "invalid input, naming the field",
                      503: "no model yet, or the model cannot be loaded"}


def _nested(shape: tuple[int, ...], leaf: dict[str, Any]) -> dict[str, Any]:
    schema = leaf
    for dim in reversed(shape):
        schema = {"type": "array", "minItems": dim, "maxItems": dim, "items": schema}
    return schema


def instance_schema(manifest: Manifest) -> dict[str, Any]:
    """One instance, exactly as the predictor takes it."""
    limits = manifest.limits
    if manifest.preprocessing.kind == "text":
        text: dict[str, Any] = {"type": "string", "minLength": 1, "pattern": r"\S",
                                "description": "text; not empty or only whitespace"}
        if limits.max_text_chars:
            text["maxLength"] = limits.max_text_chars
        return text
    shape = manifest.inputs[0].item_shape
    leaf: dict[str, Any] = {"type": "number",
                            "minimum": limits.value_min if limits.value_min is not None else -FLOAT32_MAX,
                            "maximum": limits.value_max if limits.value_max is not None else FLOAT32_MAX}
    forms = accepted_shapes(shape)
    described = " or ".join(str(list(f)) for f in forms)
    schemas = [_nested(f, leaf) for f in forms]
    return {**(schemas[0] if len(schemas) == 1 else {"anyOf": schemas}),
            "description": f"numbers in shape {described}"}


def request_schema(manifest: Manifest) -> dict[str, Any]:
    return {
        "title": "PredictRequest", "type": "object", "required": ["instances"], "additionalProperties": False,
        "properties": {
            "instances": {"type": "array", "minItems": 1, "maxItems": manifest.limits.max_batch,
                          "items": instance_schema(manifest), "description": "a batch of instances"},
            "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "default": 3,
                      "description": "how many labels to return per instance"},
        },
    }


def response_schema(manifest: Manifest) -> dict[str, Any]:
    labels = list(manifest.labels)
    score = {"type": "number", "minimum": 0, "maximum": 1}
    label = {"type": "string", "enum": labels}
    return {
        "title": "PredictResponse", "type": "object", "required": ["model", "predictions", "latency_ms"],
        "additionalProperties": False,
        "properties": {
            "model": {"type": "object", "required": ["recipe", "version"], "additionalProperties": False,
                      "properties": {"recipe": {"const": manifest.recipe}, "version": {"type": "string"}}},
            "predictions": {"type": "array", "minItems": 1, "maxItems": manifest.limits.max_batch, "items": {
                "type": "object", "required": ["label", "index", "score", "top_k"], "additionalProperties": False,
                "properties": {
                    "label": label, "index": {"type": "integer", "minimum": 0, "maximum": len(labels) - 1},
                    "score": score,
                    "top_k": {"type": "array", "minItems": 1, "maxItems": min(MAX_TOP_K, len(labels)), "items": {
                        "type": "object", "required": ["label", "score"], "additionalProperties": False,
                        "properties": {"label": label, "score": score}}}}}},
            "latency_ms": {"type": "number", "minimum": 0},
        },
    }


def model_schema(manifest: Manifest) -> dict[str, Any]:
    keys = ["recipe", "version", "task", "labels", "inputs", "limits", "metrics", "quantization", "training",
            "threads", "example"]
    return {
        "title": "ModelInfo", "type": "object", "required": keys,
        "properties": {
            "recipe": {"const": manifest.recipe}, "version": {"type": "string"}, "task": {"type": "string"},
            "labels": {"type": "array", "items": {"type": "string"}, "const": list(manifest.labels)},
            "inputs": {"type": "array", "items": {"type": "object"}}, "limits": {"type": "object"},
            "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
            "quantization": {"type": ["object", "null"]}, "training": {"type": "object"},
            "threads": {"type": "integer", "minimum": 1}, "example": {"$ref": f"{_REF}PredictRequest"},
        },
    }


def _content(ref: str, example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": {"$ref": _REF + ref}}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _errors(statuses: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status in statuses:
        schema: dict[str, Any] = {"$ref": f"{_REF}Error"}
        if status == 413:
            schema = {"anyOf": [schema, {"$ref": f"{_REF}GatewayError"}]}
        out[str(status)] = {"description": ERROR_DESCRIPTIONS[status], "content": {"application/json": {
            "schema": schema}}}
    return out


def _with_responses(operation: dict[str, Any], ok: dict[str, Any], errors: tuple[int, ...]) -> dict[str, Any]:
    return {**operation, "responses": {"200": ok, **_errors(errors)}}


def document(base: dict[str, Any], predictor: Predictor | None) -> dict[str, Any]:
    """The served document: the resolver's routes (`base`) with exact schemas for `predictor`'s model.

    Without a model (nothing promoted yet) the request schema cannot be known; the document says so
    and every route declares its 503.
    """
    doc = copy.deepcopy(base)
    doc["info"] = {**doc.get("info", {}), "title": TITLE, "version": VERSION}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA, "GatewayError": GATEWAY_ERROR_SCHEMA, "Health": HEALTH_SCHEMA}
    request_example = response_example = None
    if predictor is not None:
        manifest = predictor.manifest
        schemas |= {"PredictRequest": request_schema(manifest), "PredictResponse": response_schema(manifest),
                    "ModelInfo": model_schema(manifest)}
        request_example, response_example = examples(predictor)
        doc["info"]["description"] = (f"Predictions from the live {manifest.recipe} model "
                                      f"({predictor.describe()['version']}). POST /predict with a batch of instances.")
    else:
        schemas |= {"PredictRequest": {"title": "PredictRequest", "type": "object",
                                       "description": "no model is loaded yet: see GET /health"},
                    "PredictResponse": {"title": "PredictResponse", "type": "object"},
                    "ModelInfo": {"title": "ModelInfo", "type": "object"}}
    # 404 belongs to no route: it is declared once, for every path the API does not have
    doc["components"] = {"schemas": schemas, "responses": {"NotFound": _errors((404,))["404"]}}
    paths = doc.get("paths", {})
    if "post" in paths.get("/predict", {}):
        op = paths["/predict"]["post"]
        op["requestBody"] = {"required": True, "content": _content("PredictRequest", request_example)}
        ok = {"description": "one prediction per instance", "content": _content("PredictResponse", response_example)}
        paths["/predict"]["post"] = _with_responses(op, ok, (400, 405, 413, 415, 422, 503))
    if "get" in paths.get("/health", {}):
        paths["/health"]["get"] = _with_responses(
            paths["/health"]["get"], {"description": "a model is loaded", "content": _content("Health")}, (405, 503))
    if "get" in paths.get("/model", {}):
        paths["/model"]["get"] = _with_responses(
            paths["/model"]["get"], {"description": "the served model", "content": _content("ModelInfo")}, (405, 503))
    return doc


def examples(predictor: Predictor) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The model's own first sample row as a request, and what the model answers to it."""
    from lambdaforge.runtime.schemas import PredictResponse

    request = predictor.sample_request()
    try:
        results = predictor.predict(request["instances"], top_k=3)
    except Exception:  # an example must never break the document
        return request, None
    answer = PredictResponse.build(predictor.describe(), results, 1.0)
    return request, json.loads(answer.model_dump_json())


__all__ = ["document", "examples", "instance_schema", "request_schema", "response_schema"]
