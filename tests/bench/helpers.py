"""Shared by the ``edgegen bench`` tests (conftest.py holds the fixtures)."""
from __future__ import annotations

STUB_GBPS = 10.0     # the bandwidth the CLI tests see (test_bandwidth.py measures the real probe)


def run_bench(capsys, args: list[str]) -> tuple[int, str, str]:
    """``edgegen bench ARGS`` in this process (its children are real processes): (exit status, stdout, stderr)."""
    from edgegen.cli import main
    status = main(["bench", *args])
    out = capsys.readouterr()
    return status, out.out, out.err
