"""Request and response bodies of the HTTP API, as pydantic models.

The same models validate requests and produce the OpenAPI document, so the document cannot
drift from what the server accepts. Requests are strict (no "5" for 5, no unknown fields, no
explicit nulls), which keeps the schema honest for generated clients and fuzzers alike.
Every size is bounded: texts, candidate lists, beams and lengths, so no request can ask for
unbounded work. The image is not a model field: it travels as base64 in JSON or as a file
part in multipart, and :func:`request_body_schema` adds it per content type.
"""

from __future__ import annotations

import copy
import functools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_TEXT_CHARS = 1000
MAX_ARTICLE_CHARS = 20_000
MAX_CANDIDATES = 2000
MAX_CANDIDATE_CHARS = 200
MAX_BEAM = 10
MAX_LEN = 128
MAX_TOPK = 100

Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
Candidates = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=MAX_CANDIDATE_CHARS)]],
    Field(min_length=1, max_length=MAX_CANDIDATES)]
Beam = Annotated[int, Field(ge=1, le=MAX_BEAM, description="beam size (default: the task's "
                                                            "official setting)")]
MaxLen = Annotated[int, Field(ge=1, le=MAX_LEN, description="most tokens to generate")]


class _Request(BaseModel):
    # strict: JSON types must match the schema exactly; forbid: a typo is an error, not a
    # silently ignored option. Optional fields default to None but are not nullable.
    model_config = ConfigDict(extra="forbid", strict=True)

    def options(self) -> dict[str, Any]:
        """The settings that must be equal for requests to share one batch."""
        return {}


class _Decoding(_Request):
    beam_size: Beam = None
    max_len: MaxLen = None

    def decoding(self) -> dict[str, int]:
        out = {}
        if self.beam_size is not None:
            out["beam_size"] = self.beam_size
        if self.max_len is not None:
            out["max_len_b"] = self.max_len
        return out

    def options(self) -> dict[str, Any]:
        return {"decoding": self.decoding()}


class CaptionRequest(_Decoding):
    """Describe the image."""


class VQARequest(_Decoding):
    """Answer a question about the image."""

    question: Text
    answers: Candidates = Field(None, description="allowed answers (default: the server's "
                                                  "answer list, if it has one)")
    mode: Literal["beam", "all", "open"] = Field(
        None, description="beam: beam search within `answers`; all: score every answer; "
                          "open: unconstrained (default: beam)")

    def options(self) -> dict[str, Any]:
        # duplicates change nothing but the cost: dropped, first occurrence kept
        return {"decoding": self.decoding(), "mode": self.mode,
                "answers": tuple(dict.fromkeys(self.answers)) if self.answers else None}


class GroundRequest(_Request):
    """Locate the region the text describes."""

    text: Text = Field(description="referring expression, e.g. 'the blue square'")


class EntailRequest(_Request):
    """Does the image (and optional premise) imply the hypothesis?"""

    hypothesis: Text
    premise: Text = None


class ClassifyRequest(_Request):
    """Rank class names for the image."""

    classes: Candidates = Field(description="class names to rank")
    topk: Annotated[int, Field(ge=1, le=MAX_TOPK)] = Field(
        None, description="classes to return (default: 5)")

    def options(self) -> dict[str, Any]:
        return {"classes": tuple(dict.fromkeys(self.classes)), "topk": self.topk or 5}


class SummarizeRequest(_Decoding):
    """Summarise an article (text only)."""

    text: Annotated[str, Field(min_length=1, max_length=MAX_ARTICLE_CHARS)]


class GenerateRequest(_Decoding):
    """Follow a free instruction, with an image or without."""

    prompt: Text = Field(description="the instruction, e.g. ' what is in the image?'")


# ---------------------------------------------------------------------- responses
class ErrorBody(BaseModel):
    """Every error has this shape; ``detail`` says what to change."""

    detail: str


class _Result(BaseModel):
    model: str = Field(description="the model that answered")
    latency_ms: float = Field(description="server time from request arrival to the answer")
    queue_ms: float = Field(description="part of it spent waiting for the batch to start")
    batch_size: int = Field(description="requests that ran together in this one's batch")
    tokens: list[int] = Field(description="generated token ids (with the final EOS)")
    score: float | None = Field(description="log-probability score (null if not finite)")


class CaptionResult(_Result):
    caption: str


class VQAResult(_Result):
    question: str
    answer: str
    scores: dict[str, float | None] | None = Field(
        None, description="summed log-prob of every answer (mode 'all')")


class GroundResult(_Result):
    text: str
    box: list[float] | None = Field(description="[x0, y0, x1, y1] in pixels of the original "
                                                "image; null when no box was produced")
    image_size: list[int] = Field(description="[width, height] of the decoded image")


class EntailResult(_Result):
    hypothesis: str
    answer: str = Field(description="yes, no or maybe")
    label: str = Field(description="entailment, contradiction or neutral")
    scores: dict[str, float | None]


class ClassScore(BaseModel):
    label: str
    score: float | None


class ClassifyResult(_Result):
    label: str
    topk: list[ClassScore]


class SummarizeResult(_Result):
    summary: str


class GenerateResult(_Result):
    prompt: str
    text: str


class ModelInfo(BaseModel):
    id: str
    task: str | None = Field(description="what the checkpoint was fine-tuned for, if known")
    device: str
    dtype: str
    endpoints: list[str]


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    queue_depth: int


# ---------------------------------------------------------------------- OpenAPI bodies
IMAGE_JSON = {"type": "string", "format": "byte", "contentEncoding": "base64",
              "description": "the image file (PNG, JPEG, WebP, AVIF, GIF, BMP, TIFF) as base64; "
                             "a data: URL is accepted. URLs are not fetched."}
IMAGE_FILE = {"type": "string", "format": "binary", "description": "the image file"}


def _drop_null_defaults(schema: dict) -> dict:
    """Optional fields default to None in Python but are not nullable on the wire."""
    for prop in schema.get("properties", {}).values():
        if prop.get("default", 0) is None:
            del prop["default"]
    return schema


@functools.cache
def model_schema(model: type[BaseModel]) -> dict:
    """The JSON schema of a request model, without the image (cached: read, never edit)."""
    return _drop_null_defaults(model.model_json_schema())


def request_body_schema(model: type[BaseModel], image: str) -> dict:
    """The OpenAPI ``requestBody`` of a task: JSON (image as base64) or multipart (image as a
    file part, lists as repeated parts)."""
    base = model_schema(model)
    content = {}
    for media, image_schema in (("application/json", IMAGE_JSON),
                                ("multipart/form-data", IMAGE_FILE)):
        schema = copy.deepcopy(base)
        schema["additionalProperties"] = False
        if media == "multipart/form-data":
            # a list is repeated parts, so an empty list is no part at all: the same as
            # leaving an optional list out
            for name, prop in schema["properties"].items():
                if prop.get("type") == "array" and name not in schema.get("required", []):
                    prop.pop("minItems", None)
        if image != "none":
            schema["properties"] = {"image": dict(image_schema), **schema["properties"]}
            if image == "required":
                schema["required"] = ["image", *schema.get("required", [])]
        content[media] = {"schema": schema}
    return {"required": True, "content": content}
