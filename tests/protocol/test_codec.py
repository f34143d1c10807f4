"""The wire codec: every message round-trips; anything else is a ProtocolError."""

from __future__ import annotations

import contextlib
import dataclasses

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from saga_hpc.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Cancel,
    Done,
    Failed,
    Heartbeat,
    Hints,
    ProtocolError,
    Register,
    Shutdown,
    Submit,
    Tokens,
    Welcome,
    decode,
    encode,
)

SAMPLES = [
    Register(
        worker_id="w1",
        rank=1,
        host="n1",
        pid=42,
        model="tiny",
        slots=16,
        kv_capacity_tokens=65536,
        block_size=32,
        engine_start_s=17.5,
    ),
    Welcome(worker_id="w1", heartbeat_s=1.0),
    Heartbeat(
        worker_id="w1",
        running=2,
        waiting=0,
        kv_blocks_total=100,
        kv_blocks_used=10,
        kv_blocks_cached=5,
        prefix_query_tokens=1000,
        prefix_hit_tokens=640,
    ),
    Submit(
        call_id="c1",
        workflow_id="wf",
        prompt_token_ids=[1, 2, 3],
        max_tokens=8,
        temperature=0.0,
        top_p=1.0,
        seed=None,
        stop=["\n"],
        priority=-3,
        cache_salt="acct-x",
        ignore_eos=True,
        stream=False,
    ),
    Tokens(call_id="c1", text="hé", output_tokens=1),
    Done(
        call_id="c1",
        text="hé",
        prompt_tokens=3,
        cached_tokens=0,
        output_tokens=1,
        finish_reason="length",
        engine_time_s=0.01,
        first_token_s=None,
    ),
    Failed(call_id="c1", message="boom", retryable=True),
    Cancel(call_id="c1"),
    Hints(
        retain=[("wf", 12.5, 0.9, [(3.0, 1.5), (6.0, 0.2)]), ("wf3", 9.0, 1.0, [])], release=["wf2"]
    ),
    Shutdown(grace_s=5.0),
    Bye(worker_id="w1", reason="shutdown"),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: object) -> None:
    assert decode(encode(msg)) == msg  # type: ignore[arg-type]


def test_frames_are_compact() -> None:
    assert len(encode(Tokens(call_id="chatcmpl-" + "a" * 32, text="tok", output_tokens=7))) < 128


def _frame(**body: object) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


def _submit_frame(ids: object) -> bytes:
    fields = {
        "call_id": "c",
        "workflow_id": "wf",
        "prompt_token_ids": ids,
        "max_tokens": 1,
        "temperature": 0.0,
        "top_p": 1.0,
        "seed": None,
        "stop": [],
        "priority": 0,
        "cache_salt": "s",
    }
    return _frame(v=PROTOCOL_VERSION, t="submit", **fields)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"\xc1", "not a msgpack frame"),
        (_frame(v=PROTOCOL_VERSION), "unknown message type"),
        (msgpack.packb([1, 2]), "not a map"),
        (_frame(v=99, t="cancel", call_id="c"), "protocol version 99"),
        (_frame(v=PROTOCOL_VERSION, t="cancel"), "missing field 'call_id'"),
        (_frame(v=PROTOCOL_VERSION, t="cancel", call_id=5), "Cancel.call_id: bad value"),
        (_frame(v=PROTOCOL_VERSION, t="cancel", call_id="c", extra=1), "unknown fields ['extra']"),
        (
            _frame(v=PROTOCOL_VERSION, t="tokens", call_id="c", text="x", output_tokens=True),
            "bad value",
        ),
        *(
            (_frame(v=PROTOCOL_VERSION, t="hints", retain=retain, release=[]), "Hints.retain")
            for retain in (
                [["wf", "soon", 1.0, []]],
                [["wf", 12.5, 0.9]],  # no steps
                [["wf", 12.5, 0.9, 7]],
                [["wf", 12.5, 0.9, [[3.0]]]],
                [["wf", 12.5, 0.9, [[3.0, "x"]]]],
                [["wf", 12.5, 0.9, [[3.0, 1.0, 2.0]]]],
                "wf",
            )
        ),
        *(
            (_submit_frame(ids), "Submit.prompt_token_ids: bad value")
            for ids in ([1, 2], b"\x01\x00\x00", "abcd", None)
        ),
    ],
)
def test_bad_frames_are_rejected(frame: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error.replace("[", r"\[").replace("]", r"\]")):
        decode(frame)


def test_a_submit_without_the_stream_field_streams() -> None:
    # A head that predates the field: its workers stream every call, as before.
    msg = decode(_submit_frame(b"\x01\x00\x00\x00\x02\x01\x00\x00"))
    assert isinstance(msg, Submit) and msg.stream and not msg.ignore_eos
    assert msg.prompt_token_ids == [1, 258]  # packed: 4-byte little-endian ids


def test_token_ids_travel_packed() -> None:
    ids = list(range(2000))
    frame = encode(dataclasses.replace(SAMPLES[3], prompt_token_ids=ids))  # type: ignore[type-var]
    assert len(frame) < 4 * len(ids) + 200
    decoded = decode(frame)
    assert isinstance(decoded, Submit) and decoded.prompt_token_ids == ids


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)


@given(st.lists(st.integers(min_value=0, max_value=2**32 - 1), max_size=50), st.integers(1, 4096))
def test_submit_round_trips_any_prompt(ids: list[int], max_tokens: int) -> None:
    msg = Submit(
        call_id="c",
        workflow_id="w",
        prompt_token_ids=ids,
        max_tokens=max_tokens,
        temperature=0.7,
        top_p=0.9,
        seed=1,
        stop=[],
        priority=0,
        cache_salt="s",
    )
    assert decode(encode(msg)) == msg
