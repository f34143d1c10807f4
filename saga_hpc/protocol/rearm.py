"""Sending through a plain shadow of an asyncio ZeroMQ socket without losing receives.

The head and the echo worker send frames that can go at once through a plain
(`zmq.Socket.shadow`) copy of their asyncio socket: no future per frame. But
ZeroMQ signals its socket's file descriptor by edge: such a send may take the
edge of frames arriving meanwhile, which the asyncio socket's receive waits
for. Reading EVENTS through the asyncio socket lets it see them (what it does
after its own sends): once for all the sends of a turn of the event loop, at
its next turn, not once per frame.
"""

from __future__ import annotations

import asyncio

import zmq
import zmq.asyncio


class EdgeRearm:
    """Call `after_send()` after each plain send on `sock`'s shadow."""

    def __init__(self, sock: zmq.asyncio.Socket) -> None:
        self.sock = sock
        self.due = False  # a look at the socket's events is scheduled

    def after_send(self) -> None:
        if not self.due:
            self.due = True
            asyncio.get_running_loop().call_soon(self._recheck)

    def _recheck(self) -> None:
        self.due = False
        if not self.sock.closed:
            self.sock.get(zmq.EVENTS)
