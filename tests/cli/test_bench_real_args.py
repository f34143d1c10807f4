"""`saga-hpc bench --real`: bad input exits 2 with one line, before any engine starts."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import run


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--workload", "swe-bench,webarena"], "one workload at a time"),
        (["--tasks", "0"], "must be positive"),
        (["--kv-tokens", "-5"], "must be positive"),
        (["--systems", "vllm,teleport"], "unknown system teleport"),
        (["--workload", "chess"], "unknown workload chess"),
        (["--profile", "cpu-tiny", "--fit-profile", "p.json"], "not both"),
        (["--profile", "no-such-gpu"], "no GPU profile 'no-such-gpu'"),
        (["--fit-profile", "/no/such/dir/p.json"], "--fit-profile /no/such/dir/p.json"),
        (["--repeat", "0"], "--repeat 0: rounds must be at least 1"),
        (["--repeat", "-2"], "--repeat -2: rounds must be at least 1"),
        (["--repeat", "two"], "--repeat: invalid int value"),
    ],
)
def test_bad_real_bench_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, _, err = run(capsys, "bench", "--real", *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err, err


def test_the_probe_line_says_which_rates_the_profile_followed() -> None:
    from saga_hpc.cli.bench import probe_line

    check = {"systems_unscaled": {"vllm": {"tct_mean_error": 0.13}}}
    line = probe_line([4000.0, 200.0], [8000.0, 220.0], check)
    assert "prefill 8000 vs 4000 tokens/s (x2.00: followed)" in line
    assert "decode 220 vs 200 tokens/s (x1.10: within the noise, not followed)" in line
    assert "unscaled: vllm +13.0%" in line
    assert "no probe figures" in probe_line(None, [8000.0, 220.0], check)
