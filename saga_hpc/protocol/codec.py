"""msgpack framing with a version and a type tag, and strict field validation.

Version 2: token-id lists (`Submit.prompt_token_ids`) travel as one binary
field of 4-byte little-endian unsigned ints, not as a msgpack array: packing
and checking thousands of ints one by one cost more than the rest of a call's
frames (a 2,100-token Submit: pack 38 -> ~8 us, decode 44 -> ~10 us).
Version 3: each `Hints.retain` entry carries its score's steps. A peer of
another version gets its frames dropped with a message naming both versions
(all ranks of a job run one installation, so they never differ in practice).
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from saga_hpc.protocol.messages import MESSAGE_TYPES, Message

PROTOCOL_VERSION = 3


class ProtocolError(ValueError):
    """A frame that is not a valid message of this protocol version."""


def encode(msg: Message) -> bytes:
    names, tag, id_lists = _layout(type(msg))
    body = {name: getattr(msg, name) for name in names}
    for name in id_lists:
        body[name] = _pack_ids(body[name])
    body["v"] = PROTOCOL_VERSION
    body["t"] = tag
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
    schema = _schema(cls)
    if not body.keys() <= schema.names:
        raise ProtocolError(f"{cls.__name__}: unknown fields {sorted(body.keys() - schema.names)}")
    for name in schema.required:
        if name not in body:
            raise ProtocolError(f"{cls.__name__}: missing field {name!r}")
    for name, value in body.items():
        restore = schema.tuples.get(name)
        if restore is not None:  # msgpack turns tuples into lists
            body[name] = value = restore(value)
        if not schema.checks[name](value):
            raise ProtocolError(f"{cls.__name__}.{name}: bad value {value!r:.60}")
    for name in schema.id_lists:
        if name in body:
            body[name] = _unpack_ids(body[name])
    msg: Message = cls(**body)
    return msg


Check = Callable[[Any], bool]
Restore = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class _Schema:
    names: frozenset[str]
    required: tuple[str, ...]  # fields without a default
    checks: dict[str, Check]  # per field: does a decoded value fit its annotation
    id_lists: tuple[str, ...]  # list[int] fields: packed ids on the wire
    tuples: dict[str, Restore]  # fields with tuples inside: the lists msgpack sends back to tuples


_SCHEMAS: dict[type[Any], _Schema] = {}
_LAYOUTS: dict[type[Any], tuple[tuple[str, ...], str, tuple[str, ...]]] = {}


def _layout(cls: type[Any]) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
    """Field names, type tag and packed id fields of a message class
    (dataclasses.fields and type hints per frame cost more than packing)."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        layout = _LAYOUTS[cls] = (
            tuple(f.name for f in dataclasses.fields(cls)),
            cls.__name__.lower(),
            _schema(cls).id_lists,
        )
    return layout


def _is_id_list(hint: Any) -> bool:
    return typing.get_origin(hint) in (list, Sequence) and typing.get_args(hint) == (int,)


_SWAP = sys.byteorder != "little"  # the wire is little-endian


def _pack_ids(ids: Sequence[int]) -> bytes:
    """4 bytes per id (OverflowError for an id outside 0..2**32-1: not a token)."""
    if isinstance(ids, array) and ids.typecode == "I" and not _SWAP:
        return ids.tobytes()  # the head's own ids: already packed
    packed = array("I", ids)
    if _SWAP:
        packed.byteswap()
    return packed.tobytes()


def _unpack_ids(raw: bytes) -> list[int]:
    ids = array("I")
    ids.frombytes(raw)
    if _SWAP:
        ids.byteswap()
    return ids.tolist()


def _is_packed_ids(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) % 4 == 0


def _schema(cls: type[Any]) -> _Schema:
    """Each field's check, built once per message class from its annotations
    (resolving and walking type hints per frame cost more than the rest of decode)."""
    schema = _SCHEMAS.get(cls)
    if schema is None:
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        schema = _SCHEMAS[cls] = _Schema(
            names=frozenset(f.name for f in fields),
            required=tuple(
                f.name
                for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ),
            checks={
                f.name: _is_packed_ids if _is_id_list(hints[f.name]) else _check(hints[f.name])
                for f in fields
            },
            id_lists=tuple(f.name for f in fields if _is_id_list(hints[f.name])),
            tuples={
                f.name: restore
                for f in fields
                if (restore := _tuple_restore(hints[f.name])) is not None
            },
        )
    return schema


def _tuple_restore(hint: Any) -> Restore | None:
    """What turns the lists msgpack made of a value's tuples back into tuples,
    for an annotation of lists and tuples (None: no tuple inside). A value of
    another shape is left as it came, for its check to reject."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        parts = [_tuple_restore(arg) or _same for arg in typing.get_args(hint)]
        return lambda value: (
            tuple(restore(v) for restore, v in zip(parts, value, strict=True))
            if isinstance(value, list) and len(value) == len(parts)
            else value
        )
    if origin is list:
        each = _tuple_restore(typing.get_args(hint)[0])
        if each is None:
            return None
        return lambda value: [each(v) for v in value] if isinstance(value, list) else value
    return None


def _same(value: Any) -> Any:
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_float(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check(hint: Any) -> Check:
    """A check for a (simple) annotation: scalars, unions, list, tuple."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        alternatives = [_check(arg) for arg in typing.get_args(hint)]
        return lambda value: any(ok(value) for ok in alternatives)
    if hint is type(None):
        return lambda value: value is None
    if hint is float:
        return _is_float
    if hint is int:
        return _is_int
    if origin is list:
        (item,) = typing.get_args(hint)
        each = _check(item)
        return lambda value: isinstance(value, list) and all(map(each, value))
    if origin is tuple:
        parts = [_check(arg) for arg in typing.get_args(hint)]
        return lambda value: (
            isinstance(value, tuple)
            and len(value) == len(parts)
            and all(ok(v) for ok, v in zip(parts, value, strict=True))
        )
    return lambda value: isinstance(value, hint)
