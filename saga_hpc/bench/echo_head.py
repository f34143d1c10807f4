"""A real head whose workers are echo engines in a child process.

`python -m saga_hpc.bench.echo_head --db URL --model DIR --endpoint-file F`
serves the real HTTP API, core, store and ZeroMQ protocol, so the head can be
measured (`saga-hpc bench-head`) and killed (the crash test) without vLLM.
The echo workers run in a second process, as worker ranks would, so they do
not share the head's event loop; they exit when the head does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import uvloop

from saga_hpc.head.server import HeadRuntime, ServeOptions
from saga_hpc.protocol.curve import ChannelKeys, WorkerGate


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m saga_hpc.bench.echo_head", description=__doc__)
    p.add_argument("--db", required=True, help="store URL")
    p.add_argument("--model", required=True, help="model directory (for its tokenizer)")
    p.add_argument("--endpoint-file", required=True, help="written once the head serves")
    p.add_argument("--port", type=int, default=0, help="HTTP port (0: any free one)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--slots", type=int, default=256, help="concurrent calls per worker")
    p.add_argument("--delay", type=float, default=0.0, help="seconds per output token")
    p.add_argument("--stream-every", type=int, default=1, help="tokens per Tokens frame")
    p.add_argument("--kv-tokens", type=int, default=65536, help="KV capacity per worker")
    p.add_argument("--system", default="saga")
    args = p.parse_args()
    opts = ServeOptions(
        model_dir=args.model,
        served_name="tiny",
        db_url=args.db,
        host="127.0.0.1",
        port=args.port,
        endpoint_file=args.endpoint_file,
        expected_workers=args.workers,
        system=args.system,
        ready_timeout_s=60,
        drain_s=2.0,
    )
    children: list[subprocess.Popen[bytes]] = []

    # Through the same CURVE gate as `serve`: the channel's cost is measured too.
    keys = ChannelKeys.generate()

    def bind(head: object) -> str:
        endpoint: str = head.bind("tcp://127.0.0.1:*", WorkerGate(keys))  # type: ignore[attr-defined]
        return endpoint

    def announce(endpoint: str) -> None:
        cmd = [sys.executable, "-m", "saga_hpc.bench.echo", endpoint]
        cmd += ["--workers", str(args.workers), "--slots", str(args.slots)]
        cmd += ["--delay", str(args.delay), "--stream-every", str(args.stream_every)]
        cmd += ["--kv-tokens", str(args.kv_tokens), "--credentials-stdin"]
        child = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        assert child.stdin is not None
        child.stdin.write(json.dumps(keys.workers.to_dict()).encode() + b"\n")
        child.stdin.close()
        children.append(child)

    try:
        code = uvloop.run(HeadRuntime(opts, bind, announce).run())
    finally:
        for child in children:
            child.terminate()
            child.wait(10)
    sys.exit(code)


if __name__ == "__main__":
    main()
