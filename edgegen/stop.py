"""Stop strings for streamed text: emit only what can no longer turn out to be part of a stop string.

Text arrives in chunks (one per token) and a stop string may span several of them, so the matcher
holds back the longest tail that is still a prefix of some stop string. The stream ends at the first
point where a stop string is complete: text before that stop string is emitted, the stop string and
anything after it are not, however the text was cut into chunks.
"""
from __future__ import annotations

from collections.abc import Sequence

from edgegen.errors import UsageError


def _check_stops(stops: Sequence[str]) -> tuple[str, ...]:
    if isinstance(stops, (str, bytes)):
        raise UsageError(f"stops must be a list of strings, found the single string {stops!r}; wrap it in a list")
    out = tuple(stops)
    for i, s in enumerate(out):
        if not isinstance(s, str):
            raise UsageError(f"stops[{i}] must be a string, found {type(s).__name__} {s!r}")
        if not s:
            raise UsageError(f"stops[{i}] is an empty string: a stop string needs at least one character")
    return out


def held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of some stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


def first_stop(text: str, stops: Sequence[str]) -> int:
    """Start of the stop string that ends first in ``text`` (the longest, if several end there), or -1.

    Ending first, not starting first: that is the match a character-by-character stream meets
    first, so the result does not depend on how the text was cut into chunks."""
    hits = [(i + len(s), i) for s in stops if (i := text.find(s)) >= 0]
    return min(hits)[1] if hits else -1


class StopMatcher:
    """feed(chunk) -> (text safe to emit now, stop hit?); flush() -> held-back text at the end."""

    def __init__(self, stops: Sequence[str]):
        self.stops = _check_stops(stops)
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> tuple[str, bool]:
        """Add the next chunk. After a stop is hit, every later call returns ("", True)."""
        if not isinstance(text, str):
            raise UsageError(f"text must be a string, found {type(text).__name__}")
        if self.stopped:
            return "", True
        buf = self._pending + text
        at = first_stop(buf, self.stops)
        if at >= 0:
            self._pending, self.stopped = "", True
            return buf[:at], True
        keep = held_back(buf, self.stops)
        self._pending = buf[len(buf) - keep:]
        return buf[:len(buf) - keep], False

    def flush(self) -> str:
        """The held-back text, once the stream has ended without a stop ("" after a stop)."""
        out, self._pending = self._pending, ""
        return out
