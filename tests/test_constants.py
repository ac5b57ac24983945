"""edgegen/constants.py restates the GGUF format's numbers so that loading a model does not import
gguf-py; here every one is checked against gguf-py itself."""
from __future__ import annotations

import subprocess
import sys

import gguf

from edgegen import constants as c


def test_tensor_types_and_block_sizes_match_gguf_py():
    assert {t.name: t.value for t in c.GGMLType} == {t.name: t.value for t in gguf.GGMLQuantizationType}
    assert {int(k): v for k, v in c.GGML_QUANT_SIZES.items()} == {int(k): v for k, v in gguf.GGML_QUANT_SIZES.items()}
    assert c.QK_K == gguf.QK_K


def test_value_types_token_types_and_magic_match_gguf_py():
    assert {t.name: t.value for t in c.GGUFValueType} == {t.name: t.value for t in gguf.GGUFValueType}
    assert {t.name: t.value for t in c.TokenType} == {t.name: t.value for t in gguf.TokenType}
    assert c.GGUF_MAGIC == gguf.GGUF_MAGIC


def test_loading_and_generating_import_no_gguf_py(tmp_path):
    code = ("import sys, edgegen; from edgegen.cli import default_model; m = edgegen.load(default_model(), threads=1); "
            "list(m.generate('Hi', max_tokens=2)); print('gguf' in sys.modules, 'jinja2' in sys.modules)")
    # run outside the repo, so that the installed package is what is imported
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]
