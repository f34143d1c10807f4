"""Head <-> worker wire protocol (ZeroMQ ROUTER/DEALER, msgpack frames)."""

from saga_hpc.protocol.codec import PROTOCOL_VERSION, ProtocolError, decode, encode
from saga_hpc.protocol.messages import (
    Bye,
    Cancel,
    Done,
    Failed,
    Heartbeat,
    Hints,
    Message,
    Register,
    Shutdown,
    Submit,
    Tokens,
    Welcome,
)

__all__ = [
    "PROTOCOL_VERSION",
    "Bye",
    "Cancel",
    "Done",
    "Failed",
    "Heartbeat",
    "Hints",
    "Message",
    "ProtocolError",
    "Register",
    "Shutdown",
    "Submit",
    "Tokens",
    "Welcome",
    "decode",
    "encode",
]
