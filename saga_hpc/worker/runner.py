"""The worker loop: register with the head, run calls on the engine, stream results back.

One asyncio loop multiplexes the DEALER socket and one task per in-flight call;
heartbeats go from a thread of their own (`beater.py`). The engine batches the
concurrent calls itself (continuous batching); the head never sends more than `slots` calls at once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import time
from typing import Any

import zmq
import zmq.asyncio

from saga_hpc.protocol import (
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
from saga_hpc.protocol.curve import WorkerCredentials, worker_socket
from saga_hpc.protocol.messages import Message
from saga_hpc.worker.beater import HeartbeatThread
from saga_hpc.worker.engine import EngineSettings, build_engine
from saga_hpc.worker.headwatch import HeadWatch, lost_after_s
from saga_hpc.worker.heartbeat import heartbeat
from saga_hpc.worker.hint_channel import WorkerChannel

log = logging.getLogger("saga_hpc.worker")


class WorkerRunner:
    def __init__(
        self,
        endpoint: str,
        rank: int,
        settings: EngineSettings,
        credentials: WorkerCredentials,
        worker_id: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.rank = rank
        self.settings = settings
        self.worker_id = worker_id or f"w{rank}"  # ranks: w1..wN; joined workers: own name
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.heartbeat_s = 1.0
        self.stopping = asyncio.Event()
        self.head_lost = False  # then nothing is sent any more: nobody would read it
        self.beater: HeartbeatThread | None = None
        self.engine: Any = None
        self.channel: WorkerChannel | None = None
        self.ctx = zmq.asyncio.Context()
        self.sock = worker_socket(self.ctx, self.worker_id, credentials, linger_ms=2000)

    async def send(self, msg: Message) -> None:
        if not self.head_lost:  # a DEALER without a peer would block at its high-water mark
            await self.sock.send(encode(msg))

    def _lose_head(self, unreachable_s: float) -> None:
        log.error(
            "%s: head at %s unreachable for %.0f s: leaving (a new head needs new workers)",
            self.worker_id,
            self.endpoint,
            unreachable_s,
        )
        self.head_lost = True
        self.stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the walltime warning is the head's
        t0 = time.monotonic()
        self.channel = self._open_channel()
        self.engine = build_engine(
            self.settings, self.channel.additional_config() if self.channel else None
        )
        engine_start_s = time.monotonic() - t0
        watch = HeadWatch(self.sock, lost_after_s(), self._lose_head)
        self.sock.connect(self.endpoint)
        await self.send(self._register(engine_start_s))
        log.info(
            "%s: engine up in %.1f s, registered at %s",
            self.worker_id,
            engine_start_s,
            self.endpoint,
        )
        self.beater = HeartbeatThread(
            self.endpoint,
            self.worker_id,
            self.credentials,
            self._beat,
            lambda: self.heartbeat_s,
            loop,
        )
        self.beater.start()
        tasks = [asyncio.create_task(self._receive()), asyncio.create_task(watch.run())]
        if self.channel is not None:
            tasks.append(asyncio.create_task(self.channel.receive_stats(self.beater.beat_now)))
        await self.stopping.wait()
        for task in tasks:
            task.cancel()
        watch.close()
        await self._drain(grace_s=0.0 if self.head_lost else 5.0)
        self.beater.stop()
        await self.send(Bye(worker_id=self.worker_id, reason="shutdown"))
        self.engine.shutdown()
        # Drop the engine now: its __del__ at interpreter exit would run shutdown
        # again after module teardown and print a TypeError.
        self.engine = None
        gc.collect()
        if self.channel is not None:
            self.channel.close()
        self.sock.close(linger=0 if self.head_lost else None)
        self.ctx.term()

    def _open_channel(self) -> WorkerChannel | None:
        """The hint scheduler needs the vLLM internals it was written for: with
        hints on, another vLLM is an error; with hints off, stock vLLM runs
        (without block-pool stats)."""
        from saga_hpc.worker.hint_scheduler import check_vllm

        try:
            check_vllm()
        except RuntimeError as exc:
            if self.settings.retention_hints:
                raise
            log.warning("%s: %s; block-pool stats off", self.worker_id, exc)
            return None
        grace = self.settings.hold_grace_s if self.settings.retention_hints else 0.0
        return WorkerChannel(self.ctx, grace, self.settings.hold_budget)

    def _register(self, engine_start_s: float) -> Register:
        cfg = self.engine.vllm_config.cache_config
        blocks = int(cfg.num_gpu_blocks or 0)
        return Register(
            worker_id=self.worker_id,
            rank=self.rank,
            host=socket.gethostname(),
            pid=os.getpid(),
            model=self.settings.served_name,
            slots=self.settings.max_num_seqs,
            kv_capacity_tokens=blocks * self.settings.block_size,
            block_size=self.settings.block_size,
            engine_start_s=engine_start_s,
        )

    async def _receive(self) -> None:
        while True:
            frame = await self.sock.recv()
            try:
                msg = decode(frame)
            except ProtocolError as exc:
                log.error("%s: dropped bad frame from head: %s", self.worker_id, exc)
                continue
            self._handle(msg)

    def _handle(self, msg: Message) -> None:
        match msg:
            case Submit():
                self.tasks[msg.call_id] = asyncio.create_task(self._run_call(msg))
            case Cancel():
                task = self.tasks.get(msg.call_id)
                if task is not None:
                    task.cancel()
            case Welcome():
                self.heartbeat_s = msg.heartbeat_s
            case Hints():
                if self.channel is not None and self.settings.retention_hints:
                    if log.isEnabledFor(logging.DEBUG):
                        self._log_hints(msg)
                    self.channel.push(msg.retain, msg.release)
            case Shutdown():
                self.stopping.set()
            case _:
                log.error("%s: unexpected %s from head", self.worker_id, type(msg).__name__)

    def _log_hints(self, msg: Hints) -> None:
        """What reaches the engine's scheduler, as the head sent it (times in its clock)."""
        for wf, until, score, steps in msg.retain:
            log.debug(
                "%s: hint retain %s until %r score %r steps %r",
                self.worker_id,
                wf,
                until,
                score,
                steps,
            )
        for wf in msg.release:
            log.debug("%s: hint release %s", self.worker_id, wf)

    async def _run_call(self, msg: Submit) -> None:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        from saga_hpc.worker.hint_scheduler import WORKFLOW_ARG

        params = SamplingParams(
            max_tokens=msg.max_tokens,
            temperature=msg.temperature,
            top_p=msg.top_p,
            seed=msg.seed,
            stop=msg.stop or None,
            ignore_eos=msg.ignore_eos,
            output_kind=RequestOutputKind.DELTA,
            extra_args={WORKFLOW_ARG: msg.workflow_id},
        )
        ids = list(msg.prompt_token_ids)  # a list already, once decoded
        prompt = TokensPrompt(prompt_token_ids=ids, cache_salt=msg.cache_salt)
        t0 = time.monotonic()
        first: float | None = None
        parts: list[str] = []
        out_tokens, cached, reason = 0, 0, "stop"
        stats: Any = None
        try:
            async for out in self.engine.generate(
                prompt, params, msg.call_id, priority=msg.priority
            ):
                completion = out.outputs[0]
                if completion.token_ids and first is None:
                    first = time.monotonic() - t0
                out_tokens += len(completion.token_ids)
                cached = out.num_cached_tokens or 0
                if completion.text:
                    parts.append(completion.text)
                    if msg.stream:  # a whole answer goes in Done only
                        await self.send(
                            Tokens(
                                call_id=msg.call_id, text=completion.text, output_tokens=out_tokens
                            )
                        )
                if out.finished:
                    reason = completion.finish_reason or "stop"
                    stats = out.metrics
        except asyncio.CancelledError:
            await self.engine.abort(msg.call_id)
            await self.send(Failed(call_id=msg.call_id, message="cancelled", retryable=False))
            raise
        except Exception as exc:  # an engine error must reach the client, not kill the worker
            log.exception("%s: call %s failed", self.worker_id, msg.call_id)
            await self.send(
                Failed(call_id=msg.call_id, message=f"engine error: {exc}", retryable=True)
            )
            return
        finally:
            self.tasks.pop(msg.call_id, None)
        await self.send(
            Done(
                call_id=msg.call_id,
                text="".join(parts),
                prompt_tokens=len(msg.prompt_token_ids),
                cached_tokens=cached,
                output_tokens=out_tokens,
                finish_reason=reason,
                engine_time_s=time.monotonic() - t0,
                first_token_s=first,
                **engine_timings(stats),
            )
        )

    def _beat(self) -> Heartbeat:
        """The heartbeat as of now. Called from the heartbeat thread: it only
        reads numbers the loop keeps up to date; a beat taken while they change
        may mix two engine steps, as the next beat a second later corrects."""
        from saga_hpc.worker.stats import SnapshotLogger

        snap = SnapshotLogger.snapshot
        return heartbeat(
            self.worker_id,
            running=snap.running,
            waiting=snap.waiting,
            kv_usage=snap.kv_usage,
            prefix_query_tokens=snap.prefix_query_tokens,
            prefix_hit_tokens=snap.prefix_hit_tokens,
            total_blocks=int(self.engine.vllm_config.cache_config.num_gpu_blocks or 0),
            pool=self.channel.latest if self.channel is not None else None,
        )

    async def _drain(self, grace_s: float) -> None:
        """Let in-flight calls finish for `grace_s`, then abort the rest."""
        if self.tasks:
            _, pending = await asyncio.wait(list(self.tasks.values()), timeout=grace_s)
            for task in pending:
                task.cancel()


def engine_timings(stats: Any) -> dict[str, Any]:
    """Queue, prefill and decode time of a finished request from vLLM's
    `RequestStateStats` (engine-core monotonic timestamps; 0 means never set):
    what the simulator's cost profile is fitted to (`saga-hpc fit-profile`)."""
    if stats is None or not getattr(stats, "first_token_ts", 0.0):
        return {}
    queued, scheduled = stats.queued_ts, stats.scheduled_ts
    first, last = stats.first_token_ts, stats.last_token_ts
    return {
        "engine_queue_s": max(0.0, scheduled - queued) if queued and scheduled else None,
        "prefill_s": max(0.0, first - scheduled) if scheduled else None,
        "decode_s": max(0.0, last - first),
        "preemptions": int(stats.num_preemptions),
    }


def run_worker(
    endpoint: str,
    rank: int,
    settings: EngineSettings,
    credentials: WorkerCredentials,
    worker_id: str | None = None,
) -> None:
    asyncio.run(WorkerRunner(endpoint, rank, settings, credentials, worker_id).run())
