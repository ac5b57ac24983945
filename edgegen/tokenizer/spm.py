"""SentencePiece-style BPE (tokenizer.ggml.model = "llama"), as llama.cpp's llm_tokenizer_spm runs it.

1. A space is put in front of the text when it starts a fragment (``add_space_prefix``), and
   every space becomes "▁" (U+2581).
2. Each character is a symbol. Every adjacent pair whose concatenation is a token is a candidate,
   scored by that token's score.
3. The best candidate (highest score, ties to the leftmost) is merged; the merged symbol's new
   pairs with its neighbours become candidates. Stale candidates are skipped. Repeat until none.
4. Each final symbol is its token, or, when it is a character the vocabulary lacks, its UTF-8
   bytes as byte-fallback tokens ``<0xXX>``.

Unlike the Hugging Face BPE conversion of a SentencePiece model, merges here need not have both
halves in the vocabulary and ties between different pieces go to the left, which is what
llama.cpp's test vectors pin down; hence this small loop in Python instead of ``tokenizers``.
"""
from __future__ import annotations

import heapq
from typing import Sequence

from edgegen.errors import TokenizerError

__all__ = ["SPACE", "SpmEncoder"]

SPACE = "\u2581"  # "▁": how SentencePiece writes a space inside tokens
N_BYTES = 256


class SpmEncoder:
    """Encodes plain text (no special tokens) into ids with a SentencePiece vocabulary."""

    def __init__(self, token_to_id: dict[str, int], scores: Sequence[float], byte_ids: Sequence[int | None],
                 add_space_prefix: bool, source: str):
        assert len(byte_ids) == N_BYTES
        self._token_to_id = token_to_id
        self._scores = scores
        self._byte_ids = byte_ids
        self._add_space_prefix = add_space_prefix
        self._source = source

    def encode(self, text: str, after_special: bool) -> list[int]:
        """Ids of one text fragment; ``after_special``: it starts the text or follows a special token."""
        if self._add_space_prefix and after_special:
            text = " " + text
        return self._merge(text.replace(" ", SPACE))

    def _merge(self, text: str) -> list[int]:
        token_to_id, scores = self._token_to_id, self._scores
        n = len(text)
        if n == 0:
            return []
        # Symbol i covers text[i : i + length[i]]; a symbol merged into its left neighbour has length 0.
        length = [1] * n
        prev = list(range(-1, n - 1))
        nxt = [*range(1, n), -1]

        # Candidates: (-score, left, merged length); heapq pops the highest score, then the leftmost.
        def candidate(left: int, right: int) -> tuple[float, int, int] | None:
            if left < 0 or right < 0:
                return None
            size = length[left] + length[right]
            tid = token_to_id.get(text[left:left + size])
            return None if tid is None else (-scores[tid], left, size)

        heap = [c for c in map(candidate, range(n - 1), range(1, n)) if c is not None]
        heapq.heapify(heap)
        while heap:
            _, left, size = heapq.heappop(heap)
            right = nxt[left]
            # Stale: the left symbol was absorbed, or either side has grown since this was pushed.
            if length[left] == 0 or right < 0 or length[left] + length[right] != size:
                continue
            length[left] = size
            length[right] = 0
            nxt[left] = nxt[right]
            if nxt[left] >= 0:
                prev[nxt[left]] = left
            for c in (candidate(prev[left], left), candidate(left, nxt[left])):
                if c is not None:
                    heapq.heappush(heap, c)

        ids: list[int] = []
        i = 0
        while i >= 0:
            piece = text[i:i + length[i]]
            tid = token_to_id.get(piece)
            if tid is not None:
                ids.append(tid)
            else:  # only single characters can be missing: merges always make tokens
                ids.extend(self._byte_tokens(piece))
            i = nxt[i]
        return ids

    def _byte_tokens(self, piece: str) -> list[int]:
        ids = []
        for b in piece.encode("utf-8"):
            tid = self._byte_ids[b]
            if tid is None:
                raise TokenizerError(f"{self._source}: cannot encode {piece!r}: tokenizer.ggml.tokens has neither "
                                     f"the byte-fallback token <0x{b:02X}> nor the character")
            ids.append(tid)
        return ids
