"""`saga-hpc report`: usage per account and user over a period, like `sreport`."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import re
import sys
import time
from pathlib import Path

from saga_hpc.cli._store import open_store
from saga_hpc.config import add_db_argument
from saga_hpc.errors import UsageError
from saga_hpc.report import COLUMNS, ReportRow, build_report


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="usage per account and user over a period (like sreport)")
    p.add_argument(
        "--start",
        default="now-1day",
        help="ISO time, unix seconds, 'now' or 'now-N{hours,days}' (default now-1day)",
    )
    p.add_argument("--end", default="now", help="end of the period (default now)")
    p.add_argument("--account")
    p.add_argument("--user")
    p.add_argument(
        "-P", "--parsable", action="store_true", help="'|'-separated with a header, like sreport -P"
    )
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument(
        "--slo-tct", type=float, default=600.0, help="task completion time SLO in seconds (600)"
    )
    p.add_argument("--plot", type=Path, help="also draw used vs entitled share per account (PNG)")
    add_db_argument(p)
    p.set_defaults(func=_report)


_UNITS = {
    "s": 1,
    "min": 60,
    "minutes": 60,
    "hour": 3600,
    "hours": 3600,
    "day": 86400,
    "days": 86400,
}
_RELATIVE = re.compile(r"^now-(\d+(?:\.\d+)?)(s|min|minutes|hour|hours|day|days)$")


def parse_time(text: str, now: float) -> float:
    """ISO 8601, unix seconds, `now`, or `now-N<unit>` (s, min, hours, days)."""
    t = text.strip()
    if t == "now":
        return now
    m = _RELATIVE.match(t)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(t)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(t).timestamp()
    except ValueError:
        hint = "use ISO (2026-11-25T10:00), unix seconds, now or now-2hours"
        raise UsageError(f"cannot read time {text!r}: {hint}") from None


def _report(args: argparse.Namespace) -> int:
    now = time.time()
    start, end = parse_time(args.start, now), parse_time(args.end, now)
    if end <= start:
        raise UsageError("--end must be after --start")
    if args.slo_tct <= 0:
        raise UsageError("--slo-tct must be positive")
    store = open_store(args)
    try:
        rows = build_report(
            store, start, end, account=args.account, user=args.user, slo_tct_s=args.slo_tct
        )
    finally:
        store.close()
    if args.parsable:
        _print_delimited(rows, "|")
    elif args.format == "csv":
        _print_delimited(rows, ",")
    elif args.format == "json":
        print(
            json.dumps(
                {
                    "start": start,
                    "end": end,
                    "rows": [dict(zip(COLUMNS, r.values(), strict=True)) for r in rows],
                },
                indent=2,
            )
        )
    else:
        _print_table(rows, start, end)
    if args.plot:
        _plot(rows, args.plot)
    return 0


def _cell(v: object) -> str:
    if v is None:
        return ""
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _print_delimited(rows: list[ReportRow], sep: str) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=sep, lineterminator="\n")
    writer.writerow([c.replace("_", " ").title().replace(" ", "") for c in COLUMNS])
    for r in rows:
        writer.writerow([_cell(v) for v in r.values()])
    sys.stdout.write(buf.getvalue())


def _print_table(rows: list[ReportRow], start: float, end: float) -> None:
    fmt = "%Y-%m-%dT%H:%M:%S"
    period = (
        f"{time.strftime(fmt, time.localtime(start))} - {time.strftime(fmt, time.localtime(end))}"
    )
    print(f"Usage {period}")
    heads = (
        "Account",
        "User",
        "Tasks",
        "Calls",
        "Prompt",
        "Cached",
        "Output",
        "GPU-s",
        "TCT med",
        "TCT p99",
        "SLO",
        "Entitled",
        "Used",
        "FS",
    )
    print(" ".join(f"{h:>10s}" for h in heads))
    print(" ".join("-" * 10 for _ in heads))
    for r in rows:
        print(" ".join(f"{_cell(v):>10s}" for v in r.values()))
    if not rows:
        print("(no usage in this period)")


def _plot(rows: list[ReportRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accounts = [r for r in rows if not r.user]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = range(len(accounts))
    ax.bar([x - 0.2 for x in xs], [r.share_entitled for r in accounts], 0.4, label="entitled")
    ax.bar([x + 0.2 for x in xs], [r.share_used for r in accounts], 0.4, label="used")
    ax.set_xticks(list(xs), [r.account for r in accounts])
    ax.set_ylabel("share of GPU-seconds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot written to {path}")
