"""Per-token log-probabilities as people read them: byte-level tokens merged into whole characters.

A byte-level BPE splits a character like "é" or "🙂" across tokens whose text alone is a replacement mark.
`characters()` joins consecutive tokens until their bytes decode as UTF-8, so a view shows the character, with the
group's probability (the product of its tokens') and the alternatives of its first token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Piece:
    text: str
    logprob: float
    tokens: list[dict[str, Any]] = field(default_factory=list)

    @property
    def probability(self) -> float:
        return math.exp(self.logprob)

    @property
    def alternatives(self) -> list[tuple[str, float]]:
        """The first token's top alternatives (token text, probability)."""
        first = self.tokens[0] if self.tokens else {}
        return [(t["token"], math.exp(t["logprob"])) for t in first.get("top") or []]


def _bytes_of(token: dict[str, Any]) -> bytes:
    raw = token.get("bytes")
    return bytes(raw) if raw is not None else token["token"].encode("utf-8")


def characters(tokens: list[dict[str, Any]]) -> list[Piece]:
    """Group tokens whose bytes only decode together; a trailing incomplete group keeps its raw text."""
    pieces: list[Piece] = []
    pending: list[dict[str, Any]] = []
    buffer = b""
    for token in tokens:
        pending.append(token)
        buffer += _bytes_of(token)
        try:
            text = buffer.decode("utf-8")
        except UnicodeDecodeError:
            if len(buffer) < 8:  # a UTF-8 character is at most 4 bytes; wait for the rest
                continue
            text = buffer.decode("utf-8", errors="replace")
        pieces.append(Piece(text, sum(t["logprob"] for t in pending), pending))
        pending, buffer = [], b""
    if pending:
        pieces.append(
            Piece(buffer.decode("utf-8", errors="replace"), sum(t["logprob"] for t in pending), pending)
        )
    return pieces
