"""msgpack framing with a version and a type tag, and strict field validation."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import msgpack

from saga_hpc.protocol.messages import MESSAGE_TYPES, Message

PROTOCOL_VERSION = 1


class ProtocolError(ValueError):
    """A frame that is not a valid message of this protocol version."""


def encode(msg: Message) -> bytes:
    body = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)}
    body["v"] = PROTOCOL_VERSION
    body["t"] = type(msg).__name__.lower()
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def decode(frame: bytes) -> Message:
    try:
        body = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"not a msgpack frame: {exc}") from exc
    if not isinstance(body, dict):
        raise ProtocolError("frame is not a map")
    version = body.pop("v", None)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version!r}, expected {PROTOCOL_VERSION}")
    cls = MESSAGE_TYPES.get(body.pop("t", None))
    if cls is None:
        raise ProtocolError("unknown message type")
    hints, fields = _schema(cls)
    unknown = set(body) - set(fields)
    if unknown:
        raise ProtocolError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    for name, f in fields.items():
        if name not in body:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{cls.__name__}: missing field {name!r}")
            continue
        if name == "retain":  # msgpack turns tuples into lists
            body[name] = (
                [tuple(item) for item in body[name]] if isinstance(body[name], list) else body[name]
            )
        if not _conforms(body[name], hints[name]):
            raise ProtocolError(f"{cls.__name__}.{name}: bad value {body[name]!r:.60}")
    msg: Message = cls(**body)
    return msg


_SCHEMAS: dict[type[Any], tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]] = {}


def _schema(cls: type[Any]) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """Type hints and fields per message class (resolving hints is slow; do it once)."""
    if cls not in _SCHEMAS:
        _SCHEMAS[cls] = typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}
    return _SCHEMAS[cls]


def _conforms(value: Any, hint: Any) -> bool:
    """Check a decoded value against a (simple) annotation: scalars, unions, list, tuple."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            return False
        if item is int:  # prompt token ids: thousands per Submit, one C-speed pass
            return all(type(v) is int for v in value) or all(_conforms(v, int) for v in value)
        return all(_conforms(v, item) for v in value)
    if origin is tuple:
        args = typing.get_args(hint)
        return (
            isinstance(value, tuple)
            and len(value) == len(args)
            and all(_conforms(v, a) for v, a in zip(value, args, strict=True))
        )
    return isinstance(value, hint)
