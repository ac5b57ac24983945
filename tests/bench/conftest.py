"""Fixtures for the ``edgegen bench`` tests: a tiny GGUF, one bench run shared by several tests."""
from __future__ import annotations

import json

import pytest
from bench.helpers import STUB_GBPS

from edgegen.bench import bandwidth


@pytest.fixture(autouse=True)
def bench_cache(tmp_path, monkeypatch):
    """A private cache folder, and a stub probe for the CLI runs (no 1 GiB array in the tests)."""
    monkeypatch.setenv(bandwidth.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(bandwidth, "read_bandwidth", lambda threads: STUB_GBPS)


@pytest.fixture(scope="session")
def tiny_text_gguf(tiny_gguf):
    return tiny_gguf("llama", "q8_0")


@pytest.fixture(scope="session")
def json_run(tiny_text_gguf, tmp_path_factory):
    """One text run over every test kind (pp, tg, pg, two depths; one thread: the machine may be shared) as -o json,
    with a plot."""
    import subprocess
    import sys
    folder = tmp_path_factory.mktemp("bench-json")
    png = folder / "sweep.png"
    env_cache = folder / "cache"
    env_cache.mkdir()
    # the probe is stubbed through the cache file (this fixture outlives the per-test monkeypatch)
    (env_cache / bandwidth.CACHE_FILE).write_text(json.dumps(
        {bandwidth.cache_key(t): {"gbps": STUB_GBPS} for t in (1,)}))
    cmd = [sys.executable, "-m", "edgegen", "bench", str(tiny_text_gguf), "-p", "8", "-n", "4", "-pg", "8,4",
           "-d", "0,4", "-r", "2", "-t", "1", "--backends", "native,llama.cpp", "-o", "json", "--plot", str(png)]
    import os
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, bandwidth.CACHE_ENV: str(env_cache)},
                       timeout=300, cwd=folder)   # outside the repo: the installed package runs
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr, png


@pytest.fixture(scope="session")
def tiny_sd_folder(tmp_path_factory):
    pytest.importorskip("diffusers", reason="the tiny SD pipeline is built with diffusers: pip install 'edgegen[test]'")
    from diffusion.tiny_sd import make_tiny_sd
    return make_tiny_sd(tmp_path_factory.mktemp("bench-sd") / "sd")
