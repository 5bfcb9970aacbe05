"""Request and response bodies of the HTTP API, as pydantic models generated from the task
table (:data:`ofa.tasks.TASKS`), so a task declared there gets its bodies without edits here.

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
import re
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..tasks import Task, TaskField
from ..tasks.base import MAX_ITEM_CHARS

MAX_BEAM = 10
MAX_LEN = 128

# Decoding settings a request to a generating task may change, declared like task fields.
DECODING_FIELDS = (
    TaskField("beam_size", "beam size (default: the task's official setting)", kind="int",
              per_input=False, bounds=(1, MAX_BEAM)),
    TaskField("max_len", "most tokens to generate", kind="int", per_input=False,
              bounds=(1, MAX_LEN)),
)
DECODING_NAMES = {"beam_size": "beam_size", "max_len": "max_len_b"}  # -> GenerationConfig


def served_fields(task: Task) -> tuple[TaskField, ...]:
    """The request fields of ``task``: its fields offered over HTTP, then the decoding ones."""
    fields = tuple(f for f in task.fields if f.serve)
    return fields + (DECODING_FIELDS if task.kind == "generate" else ())


def _max_chars(f: TaskField) -> int | None:
    if f.kind == "texts":  # an item is a candidate or a tag: never longer than a candidate
        return min(f.max_chars, MAX_ITEM_CHARS)
    return f.max_chars if f.kind == "text" else None


def _field_type(f: TaskField) -> Any:
    if f.kind == "text":
        return Annotated[str, Field(min_length=1, max_length=f.max_chars)]
    if f.kind == "texts":
        item = Annotated[str, Field(min_length=1, max_length=_max_chars(f))]
        return Annotated[list[item], Field(min_length=1, max_length=f.max_items)]
    if f.kind == "int":
        return Annotated[int, Field(ge=f.bounds[0], le=f.bounds[1])]
    if f.kind == "choice":
        return Literal[f.choices]
    if f.kind == "flag":
        return bool
    raise ValueError(f"field {f.name}: no request type for kind {f.kind!r}")


def _description(f: TaskField) -> str:
    if f.default is None or "default" in f.help:
        return f.help
    return f"{f.help} (default: {f.default})"


class _Request(BaseModel):
    # strict: JSON types must match the schema exactly; forbid: a typo is an error, not a
    # silently ignored option. Optional fields default to None but are not nullable.
    model_config = ConfigDict(extra="forbid", strict=True)
    task_def: ClassVar[Task]
    field_defs: ClassVar[tuple[TaskField, ...]] = ()

    def inputs(self) -> dict[str, Any]:
        """The fields that travel with this one input (a question, a hypothesis)."""
        return {f.name: getattr(self, f.name) for f in self.field_defs if f.per_input}

    def options(self) -> dict[str, Any]:
        """The settings that must be equal for requests to share one batch: the call's
        options (unset ones at their declared default) and ``decoding``."""
        out: dict[str, Any] = {}
        decoding = {}
        for f in self.field_defs:
            if f.per_input:
                continue
            value = getattr(self, f.name)
            if f in DECODING_FIELDS:
                if value is not None:
                    decoding[DECODING_NAMES[f.name]] = value
                continue
            if isinstance(value, list):
                # duplicates change nothing but the cost: dropped, first occurrence kept
                value = tuple(dict.fromkeys(value))
            out[f.name] = f.default if value is None else value
        if self.task_def.kind == "generate":
            out["decoding"] = decoding
        return out


def _class_name(task: Task, suffix: str) -> str:
    return "".join(p.capitalize() for p in re.split(r"[^0-9A-Za-z]+", task.name)) + suffix


@functools.cache
def request_model(task: Task) -> type[_Request]:
    """The request body of ``task`` (cached per task: one model, one schema)."""
    fields = served_fields(task)
    names = [f.name for f in fields]
    if "image" in names or len(set(names)) < len(names):  # the image is no model field
        raise ValueError(f"the {task.name} task's request fields clash: {', '.join(names)}")
    model = create_model(
        _class_name(task, "Request"), __base__=_Request, __module__=__name__,
        __doc__=task.summary,
        **{f.name: (_field_type(f), Field(... if f.required else None,
                                          description=_description(f))) for f in fields})
    model.task_def, model.field_defs = task, fields
    return model


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


def _admits_none(annotation: Any) -> bool:
    return annotation is Any or annotation is None or type(None) in get_args(annotation)


@functools.cache
def result_model(task: Task) -> type[_Result]:
    """The response body of ``task``: the common fields and the task's ``outputs``."""
    fields = {name: (annotation, Field(None if _admits_none(annotation) else ...,
                                       description=description))
              for name, (annotation, description) in task.outputs.items()}
    return create_model(_class_name(task, "Result"), __base__=_Result, __module__=__name__,
                        __doc__=f"The answer of the {task.name} task.", **fields)


class FieldInfo(BaseModel):
    name: str
    kind: str = Field(description="text, texts (a list), int, choice or flag")
    required: bool
    help: str
    choices: list[str] = Field(description="the allowed values of a choice")
    max_chars: int | None = Field(description="the longest text (or list item) accepted")


class TaskInfo(BaseModel):
    name: str
    summary: str
    path: str = Field(description="where to POST a request")
    image: Literal["required", "optional", "none"]
    result_key: str = Field(description="the result field that holds the answer")
    fields: list[FieldInfo] = Field(description="the request's fields, besides the image")


class TaskList(BaseModel):
    tasks: list[TaskInfo]


def task_info(task: Task, path: str) -> TaskInfo:
    fields = [FieldInfo(name=f.name, kind=f.kind, required=f.required, help=_description(f),
                        choices=list(f.choices), max_chars=_max_chars(f))
              for f in served_fields(task)]
    return TaskInfo(name=task.name, summary=task.summary, path=path, image=task.image,
                    result_key=task.result_key, fields=fields)


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
