"""The join file: written atomically, readable by its owner only, read back whole."""

from __future__ import annotations

import stat
from argparse import Namespace
from pathlib import Path

from saga_hpc.cli._join import Rendezvous, engine_args, read_join_file, write_join_file
from saga_hpc.protocol.curve import ChannelKeys


def test_a_join_file_is_owner_only_and_round_trips(tmp_path: Path) -> None:
    args = Namespace(
        model=str(tmp_path / "m"),
        served_name="tiny",
        system="saga",
        kv_cache_mb=64.0,
        max_model_len=4096,
        max_num_seqs=16,
        hold_budget=0.5,
    )
    sent = Rendezvous("tcp://127.0.0.1:5555", ChannelKeys.generate().workers, engine_args(args))
    path = tmp_path / "join.json"
    write_join_file(str(path), sent)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["join.json"]  # no temporary left
    got = read_join_file(str(path))
    assert got == sent
    settings = got.settings()
    assert settings.kv_cache_bytes == 64_000_000 and settings.retention_hints
