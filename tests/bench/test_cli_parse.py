"""Flag parsing and the plan of ``edgegen bench``: llama-bench's lists, model pairing, clear errors."""
from __future__ import annotations

import pytest

from edgegen.bench import cli as bench_cli
from edgegen.cli import build_parser
from edgegen.errors import UsageError


def parse(*args):
    return build_parser().parse_args(["bench", *args])


def test_llama_bench_lists_and_order(tiny_text_gguf):
    a = parse(str(tiny_text_gguf), "-p", "16,32", "-n", "8", "-pg", "16,4", "-pg", "8,2", "-d", "0,64", "-t", "1,2")
    assert a.threads == [1, 2] and a.n_depth == [0, 64]
    assert bench_cli.text_tests(a) == [(16, 0, 0), (32, 0, 0), (0, 8, 0), (16, 4, 0), (8, 2, 0),
                                       (16, 0, 64), (32, 0, 64), (0, 8, 64), (16, 4, 64), (8, 2, 64)]
    a = parse(str(tiny_text_gguf), "-p", "0", "-n", "0", "-pg", "4,2")
    assert bench_cli.text_tests(a) == [(4, 2, 0)]
    with pytest.raises(UsageError, match="no test to run"):
        bench_cli.text_tests(parse(str(tiny_text_gguf), "-p", "0", "-n", "0"))


@pytest.mark.parametrize("flag,value", [("-p", "x"), ("-t", "0"), ("-r", "0"), ("-pg", "512"), ("-d", "-1")])
def test_bad_lists_are_refused(flag, value, tiny_text_gguf, capsys):
    with pytest.raises(SystemExit):
        parse(str(tiny_text_gguf), flag, value)
    assert flag in capsys.readouterr().err


def test_an_onnx_export_after_its_gguf_is_the_same_model(tmp_path, tiny_text_gguf):
    onnx = tmp_path / "export"
    onnx.mkdir()
    (onnx / bench_cli.ONNX_TEXT_MANIFEST).write_text("{}")
    mode, groups = bench_cli.groups([str(tiny_text_gguf), str(onnx), str(tiny_text_gguf)])
    assert mode == "text"
    assert groups == [{"main": str(tiny_text_gguf), "onnx": str(onnx)}, {"main": str(tiny_text_gguf)}]
    a = parse(str(tiny_text_gguf), "--backends", "native,onnxruntime", "-t", "1", "-r", "3")
    jobs, total = bench_cli.plan(a, mode, groups, ["native", "onnxruntime"], [1])
    assert [(j["group"], j["backend"], j["model"]) for j in jobs] == [
        (0, "native", str(tiny_text_gguf)), (0, "onnxruntime", str(onnx)),
        (1, "native", str(tiny_text_gguf)), (1, "onnxruntime", str(tiny_text_gguf))]
    assert total == 4 * 3 * 2          # jobs x repetitions x tests (pp512, tg128)


def test_usage_errors_name_the_flag(tmp_path, tiny_text_gguf):
    with pytest.raises(UsageError, match="--backends: expected distinct names from native, onnxruntime, llama.cpp"):
        bench_cli.backends_for(parse(str(tiny_text_gguf), "--backends", "native,torch"), "text")
    with pytest.raises(UsageError, match="--size: expected WIDTHxHEIGHT"):
        bench_cli.image_size("512")
    with pytest.raises(UsageError, match="no such file or folder"):
        bench_cli.groups([str(tmp_path / "missing.gguf")])
    with pytest.raises(UsageError, match="expected a GGUF file"):
        bench_cli.groups([str(tmp_path)])
