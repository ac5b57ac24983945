"""The real chat model answers a factual question, through model.chat and through `edgegen chat`."""
from __future__ import annotations

import io
import sys

from edgegen.cli import main
from edgegen.cli_pull import NOT_DOWNLOADED_HINT
from edgegen.fetch import CACHE_ENV

QUESTION = "What is the capital of France?"


def test_model_chat_answers_paris(smollm2):
    stream = smollm2.chat([{"role": "user", "content": QUESTION}], max_tokens=32, temperature=0.0)
    reply = "".join(t.text for t in stream)
    assert "Paris" in reply, reply
    assert stream.timing.finish_reason == "eos"


def test_cli_chat_uses_the_pulled_model(smollm2_path, monkeypatch, capsys):
    monkeypatch.setenv(CACHE_ENV, str(smollm2_path.parent))
    monkeypatch.setattr(sys, "stdin", io.StringIO(QUESTION + "\n"))
    assert main(["chat", "-n", "32", "--threads", "1"]) == 0
    out, err = capsys.readouterr()
    assert "Paris" in out, out
    assert NOT_DOWNLOADED_HINT not in err
