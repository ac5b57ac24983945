"""When edgegen lets llama.cpp use its extra buffer types (AMX tiles, repacked weights).

On a VM that reports AMX but does not keep the tile state, llama.cpp dies of SIGILL in its first
matmul (seen 2026-12-06): edgegen turns them off on CPUs that report AMX, and the environment
variable overrides it either way. These checks need no llama.cpp.
"""
from __future__ import annotations

import pytest

from edgegen.backends import llamacpp
from edgegen.errors import UsageError


@pytest.mark.parametrize("flags, amx", [
    ("fpu sse avx2 fma f16c", False),
    ("fpu avx2 avx512f amx_bf16 amx_tile amx_int8", True),
    ("fpu avx2 amx_tilex", False),   # a whole flag, not a prefix
])
def test_cpu_reports_amx(tmp_path, flags, amx):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n", encoding="ascii")
    assert llamacpp._cpu_reports_amx(str(info)) is amx


def test_unreadable_cpuinfo_reports_no_amx(tmp_path):
    assert llamacpp._cpu_reports_amx(str(tmp_path / "missing")) is False


@pytest.mark.parametrize("amx", [False, True])
def test_default_follows_the_cpu(monkeypatch, amx):
    monkeypatch.delenv(llamacpp.EXTRA_BUFTS_ENV, raising=False)
    monkeypatch.setattr(llamacpp, "_cpu_reports_amx", lambda: amx)
    assert llamacpp.extra_bufts() is (not amx)


@pytest.mark.parametrize("value, expected", [("1", True), ("0", False)])
def test_environment_overrides(monkeypatch, value, expected):
    monkeypatch.setenv(llamacpp.EXTRA_BUFTS_ENV, value)
    monkeypatch.setattr(llamacpp, "_cpu_reports_amx", lambda: expected)   # the opposite default
    assert llamacpp.extra_bufts() is expected


def test_bad_environment_value_is_named(monkeypatch):
    monkeypatch.setenv(llamacpp.EXTRA_BUFTS_ENV, "yes")
    with pytest.raises(UsageError, match="EDGEGEN_LLAMACPP_EXTRA_BUFTS='yes'"):
        llamacpp.extra_bufts()
