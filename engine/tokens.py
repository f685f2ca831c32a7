"""Token ids -> text, incrementally: clean UTF-8 boundaries for streaming, stop strings, and token bytes.

Byte-level BPE tokens can split a UTF-8 character; text is only released up to the last complete character.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

REPLACEMENT = "\ufffd"


class TokenText:
    def __init__(self, tokenizer: Any, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self._cached: str | None = ""
        self._fixed: str | None = None  # set once a stop string truncated the text

    def append(self, token_id: int) -> None:
        if self._fixed is None:
            self.ids.append(token_id)
            self._cached = None

    def text(self) -> str:
        if self._fixed is not None:
            return self._fixed
        if self._cached is None:
            self._cached = self.tokenizer.decode(self.ids, skip_special_tokens=self.skip_special_tokens)
        return self._cached

    def stable_text(self) -> str:
        """The text up to the last complete character (a split UTF-8 sequence decodes to U+FFFD at the end)."""
        text = self.text()
        if self._fixed is None:
            text = text.rstrip(REPLACEMENT)
        return text

    def find_stop(self, stops: list[str]) -> int | None:
        text = self.text()
        found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
        return min(found) if found else None

    def truncate(self, cut: int) -> None:
        self._fixed = self.text()[:cut]


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """The byte-level BPE alphabet: printable Latin-1 bytes stand for themselves, the rest are shifted past 255."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping, shift = {}, 0
    for b in range(256):
        if b in printable:
            mapping[chr(b)] = b
        else:
            mapping[chr(256 + shift)] = b
            shift += 1
    return mapping


def token_bytes(tokenizer: Any, token_id: int) -> bytes:
    """The exact bytes a token stands for (OpenAI's `bytes` field)."""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    decoder = _byte_decoder()
    if piece is not None and all(ch in decoder for ch in piece):
        return bytes(decoder[ch] for ch in piece)
    return tokenizer.decode([int(token_id)]).encode("utf-8")


def token_text(tokenizer: Any, token_id: int) -> str:
    """A token as text for display (may hold U+FFFD where it splits a character)."""
    return token_bytes(tokenizer, token_id).decode("utf-8", errors="replace")
