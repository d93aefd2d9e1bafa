"""Validate a JSON document against a shape of botocore's own service model.

The emulator's responses must be what Rekognition would send, member for member; the
service model that ships with botocore is the authority. `problems()` walks a value
and a shape together and lists every difference: unknown members, missing required
members, wrong JSON types, enum values outside the model, numbers out of range.
"""

from __future__ import annotations

import json
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, ServiceModel, Shape, StructureShape

_MODELS: dict[str, ServiceModel] = {}


def service_model(name: str = "rekognition") -> ServiceModel:
    if name not in _MODELS:
        _MODELS[name] = botocore.session.get_session().get_service_model(name)
    return _MODELS[name]


def output_shape(operation: str, service: str = "rekognition") -> StructureShape:
    shape = service_model(service).operation_model(operation).output_shape
    assert shape is not None, f"{operation} has no output shape"
    return shape


def problems(value: Any, shape: Shape, path: str = "$") -> list[str]:
    """Every way `value` (parsed JSON) differs from `shape`; empty when it conforms."""
    kind = shape.type_name
    if kind == "structure":
        return _structure(value, shape, path)  # type: ignore[arg-type]
    if kind == "list":
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        assert isinstance(shape, ListShape)
        out = _bounds(len(value), shape, path, "length")
        for i, item in enumerate(value):
            out += problems(item, shape.member, f"{path}[{i}]")
        return out
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected an object (map), got {type(value).__name__}"]
        assert isinstance(shape, MapShape)
        out = []
        for key, item in value.items():
            out += problems(key, shape.key, f"{path}<key {key!r}>")
            out += problems(item, shape.value, f"{path}[{key!r}]")
        return out
    if kind == "string":
        if not isinstance(value, str):
            return [f"{path}: expected a string, got {type(value).__name__}"]
        enum = getattr(shape, "enum", None) or []
        if enum and value not in enum:
            return [f"{path}: {value!r} is not one of {shape.name}'s values"]
        return _bounds(len(value), shape, path, "length")
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{path}: expected an integer, got {type(value).__name__}"]
        return _bounds(value, shape, path, "value")
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [f"{path}: expected a number, got {type(value).__name__}"]
        return _bounds(value, shape, path, "value")
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean"]
    if kind == "timestamp":
        # JSON 1.1 sends timestamps as epoch seconds (botocore also parses ISO strings).
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return [f"{path}: expected a timestamp (epoch seconds)"]
        return []
    if kind == "blob":
        return [] if isinstance(value, str) else [f"{path}: expected base64 text"]
    return [f"{path}: shape type {kind} is not handled by this validator"]


def _structure(value: Any, shape: StructureShape, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({shape.name}), got {type(value).__name__}"]
    out: list[str] = []
    members = shape.members
    for name in value:
        if name not in members:
            out.append(f"{path}: unknown member {name!r} for {shape.name}")
    for name in shape.required_members:
        if name not in value:
            out.append(f"{path}: missing required member {name!r} of {shape.name}")
    for name, item in value.items():
        if name in members and item is not None:
            out += problems(item, members[name], f"{path}.{name}")
        elif name in members:
            out.append(f"{path}.{name}: null is never sent by Rekognition; omit the member")
    return out


def _bounds(number: float, shape: Shape, path: str, what: str) -> list[str]:
    low = shape.metadata.get("min")
    high = shape.metadata.get("max")
    if low is not None and number < low:
        return [f"{path}: {what} {number} below {shape.name}'s minimum {low}"]
    if high is not None and number > high:
        return [f"{path}: {what} {number} above {shape.name}'s maximum {high}"]
    return []


def assert_conforms(operation: str, body: Any) -> None:
    """Fail with every difference listed when `body` is not `operation`'s output."""
    found = problems(body, output_shape(operation))
    assert not found, f"{operation} response differs from botocore's model:\n" + \
        "\n".join(found)


class ShapeChecker:
    """A botocore `after-call` hook: every response an SDK client receives from the
    emulator must match the operation's output shape (errors: `__type` and `message`).
    Register with `client.meta.events.register("after-call.rekognition", checker)`."""

    def __init__(self) -> None:
        self.checked: list[str] = []

    def __call__(self, http_response: Any, model: Any, **_: Any) -> None:
        body = json.loads(http_response.content or b"{}")
        if http_response.status_code == 200:
            found = problems(body, model.output_shape)
            assert not found, f"{model.name}: " + "; ".join(found)
        else:
            assert set(body) == {"__type", "message"}, body
        self.checked.append(model.name)
