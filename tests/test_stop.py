"""StopMatcher against the reference: the text up to the first completed stop string, however it is chunked."""
from __future__ import annotations

import numpy as np
import pytest

from edgegen.errors import UsageError
from edgegen.stop import StopMatcher


def reference(text: str, stops: list[str]) -> tuple[str, bool]:
    """Read one character at a time; at the first stop string that is complete, cut before it."""
    for end in range(1, len(text) + 1):
        done = [s for s in stops if text[:end].endswith(s)]
        if done:
            return text[:end - max(map(len, done))], True
    return text, False


def stream(chunks: list[str], stops: list[str]) -> tuple[str, bool]:
    """Feed the chunks; check after each that nothing past the reference output was emitted."""
    m, out, hit = StopMatcher(stops), "", False
    want = reference("".join(chunks), stops)[0]
    for c in chunks:
        emitted, hit = m.feed(c)
        out += emitted
        assert want.startswith(out), (out, want)
        if hit:
            break
    return (out, hit) if hit else (out + m.flush(), hit)


def chars(text: str) -> list[str]:
    return list(text)


def test_stop_split_across_chunks():
    assert stream(["hello ab", "c world"], ["abc"]) == ("hello ", True)
    assert stream(chars("hello abc world"), ["abc"]) == ("hello ", True)
    m = StopMatcher(["abc"])
    assert m.feed("xab") == ("x", False)       # "ab" is held back: it may start "abc"
    assert m.feed("c") == ("", True)
    assert m.feed("more") == ("", True) and m.flush() == ""


def test_partial_prefix_that_is_not_a_stop_is_emitted():
    m = StopMatcher(["abc"])
    assert m.feed("ab") == ("", False)
    assert m.feed("d") == ("abd", False)
    assert m.feed("a") == ("", False)
    assert m.flush() == "a"
    assert stream(chars("aab aabc"), ["aabc"]) == ("aab ", True)
    assert stream(chars("aaab"), ["aab"]) == ("a", True)


def test_multiple_stops_earliest_wins():
    stops = ["</s>", "\n\n", "User:"]
    assert stream(chars("answer\n\nUser: hi</s>"), stops) == ("answer", True)
    assert stream(["answer Us", "er:", "\n\n"], stops) == ("answer ", True)
    assert stream(["x</", "s", ">"], stops) == ("x", True)
    assert stream(["ab", "cd"], ["bcd", "c"]) == ("ab", True)   # "c" is complete before "bcd" is
    assert stream(["abcd"], ["bcd", "c"]) == ("ab", True)       # whatever the chunks
    assert stream(["abcd"], ["bc", "abc"]) == ("", True)        # both end at "c": the longer one counts


def test_stop_at_the_very_start_and_no_stop():
    assert StopMatcher(["abc"]).feed("abcdef") == ("", True)
    assert stream(chars("abc"), ["abc"]) == ("", True)
    assert stream(["plain text"], ["abc"]) == ("plain text", False)
    assert stream(["ends with ab"], ["abc"]) == ("ends with ab", False)   # held back, then flushed


def test_unicode():
    assert stream(chars("答えは42です。終わり。続き"), ["終わり"]) == ("答えは42です。", True)
    assert stream(["ok 🙂", "🙃 no"], ["🙂🙃"]) == ("ok ", True)
    assert stream(["café", " é"], ["é é"]) == ("caf", True)


def test_random_streams_match_reference():
    r = np.random.default_rng(0)
    for _ in range(500):
        stops = ["".join(r.choice(list("abé"), size=r.integers(1, 4))) for _ in range(r.integers(1, 4))]
        text = "".join(r.choice(list("abé "), size=r.integers(0, 30)))
        cuts = sorted(set(r.integers(0, len(text) + 1, size=r.integers(0, 8)).tolist()))
        chunks = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
        assert stream(chunks, stops) == reference(text, stops), (text, chunks, stops)


def test_invalid_stops():
    with pytest.raises(UsageError, match=r"stops\[1\] is an empty string"):
        StopMatcher(["ok", ""])
    with pytest.raises(UsageError, match="single string"):
        StopMatcher("abc")
    with pytest.raises(UsageError, match=r"stops\[0\] must be a string"):
        StopMatcher([3])
    with pytest.raises(UsageError, match="text must be a string"):
        StopMatcher(["a"]).feed(b"a")
