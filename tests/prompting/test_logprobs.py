"""Byte-level tokens merged into whole characters for the heatmap."""

from __future__ import annotations

import math

from prompting.logprobs import characters


def token(text_bytes: bytes, logprob: float, top=None) -> dict:
    return {
        "token": text_bytes.decode("utf-8", errors="replace"),
        "logprob": logprob,
        "bytes": list(text_bytes),
        "top": top or [],
    }


def test_a_character_split_across_tokens_is_shown_whole_with_the_joint_probability():
    smile = "🙂".encode()  # 4 bytes, split over two tokens
    pieces = characters(
        [
            token(b"Hi ", -0.1),
            token(smile[:2], -0.5, [{"token": "x", "logprob": -2.0}]),
            token(smile[2:], -0.25),
            token(b"!", -0.05),
        ]
    )
    assert [p.text for p in pieces] == ["Hi ", "🙂", "!"]
    assert math.isclose(pieces[1].logprob, -0.75) and len(pieces[1].tokens) == 2
    assert pieces[1].alternatives == [("x", math.exp(-2.0))]
    assert "\ufffd" not in "".join(p.text for p in pieces)


def test_tokens_without_bytes_fall_back_to_their_text_and_a_broken_tail_is_kept():
    pieces = characters([{"token": "ok", "logprob": -0.2, "top": []}, token("é".encode()[:1], -0.3)])
    assert [p.text for p in pieces] == ["ok", "\ufffd"]
