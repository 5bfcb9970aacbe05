"""Turning an HTTP request body into a validated task request and the image bytes.

Two encodings carry the same fields: JSON (image as base64) for programs, multipart (image
as a file part, lists as repeated fields, numbers and true/false as text) for browsers and
``curl -F``. Both end in the same strict pydantic model, so they accept exactly the same requests.
Anything else is 415; a body that cannot be parsed is 400; a parsed body with a wrong field
is 422 naming the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from .errors import ApiError
from .images import ImageError, decode_base64
from .schemas import model_schema

_INT = re.compile(r"[+-]?\d{1,18}")
_BOOL = {"true": True, "false": False}
MAX_TEXT_PART = 1024 * 1024  # one multipart text field (a whole article fits)


@dataclass
class Parsed:
    request: Any  # the task's request model
    image: bytes | None


def describe(error: ValidationError) -> str:
    """One line naming each wrong field, e.g. ``question: Field required``."""
    parts = []
    for err in error.errors(include_url=False):
        where = ".".join(str(x) for x in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def _validate(model: type[BaseModel], data: dict) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ApiError(422, describe(e)) from None


def _image_from_text(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ApiError(422, "image: must be a base64 string")
    try:
        return decode_base64(value)
    except ImageError as e:
        raise ApiError(422, str(e)) from None


async def parse_request(request: Request, model: type[BaseModel], image: str) -> Parsed:
    """``image``: "required", "optional" or "none" for this task."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json":
        return await _parse_json(request, model, image)
    if media == "multipart/form-data":
        return await _parse_multipart(request, model, image)
    raise ApiError(415, f"unsupported content type {media or '(none)'!r}: send "
                        "application/json (image as base64) or multipart/form-data (image as "
                        "a file)")


async def _parse_json(request: Request, model: type[BaseModel], image: str) -> Parsed:
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ApiError(422, f"body: must be a JSON object, got {type(data).__name__}")
    image_bytes = None
    if image != "none":
        if "image" in data:
            image_bytes = _image_from_text(data.pop("image"))
        elif image == "required":
            # report it together with the other fields' problems
            try:
                model.model_validate(data)
            except ValidationError as e:
                raise ApiError(422, "image: Field required; " + describe(e)) from None
            raise ApiError(422, "image: Field required")
    return Parsed(_validate(model, data), image_bytes)


async def _parse_multipart(request: Request, model: type[BaseModel], image: str) -> Parsed:
    properties = model_schema(model)["properties"]
    # a list is one part per item: room for every field at its longest, and a few strays
    # to report by name
    max_fields = sum(p.get("maxItems", 1) for p in properties.values()) + 16
    try:
        async with request.form(max_files=1, max_fields=max_fields,
                                max_part_size=MAX_TEXT_PART) as form:
            data: dict[str, Any] = {}
            image_bytes = None
            for key in dict.fromkeys(form.keys()):
                values = form.getlist(key)
                if key == "image" and image != "none":
                    if len(values) != 1:
                        raise ApiError(422, "image: give one image")
                    value = values[0]
                    image_bytes = (await value.read() if isinstance(value, UploadFile)
                                   else _image_from_text(value))
                    continue
                if key not in properties:
                    raise ApiError(422, f"{key}: Extra inputs are not permitted")
                data[key] = _form_value(key, values, properties[key])
    except (MultiPartException, HTTPException) as e:
        reason = getattr(e, "message", None) or getattr(e, "detail", "")
        raise ApiError(400, f"malformed multipart body: {reason}") from None
    if image == "required" and image_bytes is None:
        raise ApiError(422, "image: Field required (a file part named 'image')")
    return Parsed(_validate(model, data), image_bytes)


def _form_value(key: str, values: list, schema: dict) -> Any:
    if any(isinstance(v, UploadFile) for v in values):
        raise ApiError(422, f"{key}: must be a text field, not a file")
    if schema.get("type") == "array":
        return list(values)
    if len(values) > 1:
        raise ApiError(422, f"{key}: given {len(values)} times; give it once")
    value = values[0]
    if schema.get("type") == "integer":
        if not _INT.fullmatch(value.strip()):
            raise ApiError(422, f"{key}: Input should be a valid integer, got {value[:40]!r}")
        return int(value)
    if schema.get("type") == "boolean":
        if value.strip().lower() not in _BOOL:
            raise ApiError(422, f"{key}: Input should be true or false, got {value[:40]!r}")
        return _BOOL[value.strip().lower()]
    return value
