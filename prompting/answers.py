"""Answers a technique can always read: the final line enforced as a grammar where the provider constrains
decoding, and one documented fallback where it does not.

A technique template declares the opening of its answer line (`answer_prefix: "Final answer:"`) and its
`answer_pattern`. With a provider that constrains output (our engine; vLLM reads the same `guided_grammar`), each
answering call carries a Lark grammar: free reasoning of at most the request's max tokens less ANSWER_RESERVE,
in which no line may open with the prefix, then the prefix and the answer (a number when the answer format asks
for one). Reasoning that runs out of its budget is cut at a token and the answer line is forced, so extraction
cannot fail. Elsewhere `find_answer` applies the pattern and then the fallback: the last "the answer is X" or
"answer: X", else (for a number) the last number in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_TOKENS = 256  # the budget a grammar assumes when neither the request nor the template sets one
ANSWER_RESERVE = 24  # tokens kept for the answer line after the reasoning
MIN_REASONING = 8
ANSWER_CHARS = 80  # the longest free-text answer a grammar allows
STEP_CHARS = 160  # the longest proposed step (tree-of-thoughts) a grammar allows
NUMBER = r"/-?[0-9][0-9,]{0,15}(\.[0-9]{1,6})?/"
FREE = rf"/[^\n]{{1,{ANSWER_CHARS}}}/"
_SAID = re.compile(
    r"(?i)\b(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)\s*[:\-]?\s*\**([^\n]+?)\**\s*\.?\s*$", re.M
)
_REGEX_META = set("\\.+*?()|[]{}^$#&-~/")
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class Found:
    answer: str | None
    source: str  # "pattern", "fallback: ...", or "none"


def find_answer(text: str, pattern: str | None, numeric: bool = False) -> Found:
    """The answer in a model's text: the template's pattern (its last match), else the fallback — the last
    'the answer is X' / 'answer: X' phrase, else, when a number is expected, the last number."""
    from prompting.assertions import extract_answer

    if pattern:
        found = extract_answer(text, pattern)
        if found:
            return Found(found, "pattern")
    said = _SAID.findall(text)
    if said and said[-1].strip():
        return Found(said[-1].strip(), "fallback: the last 'the answer is' phrase")
    if numeric:
        numbers = _NUMBER.findall(text)
        if numbers:
            return Found(numbers[-1].replace("$", ""), "fallback: the last number")
    return Found(None, "none")


def max_tokens(params: dict[str, Any], declared: int | None) -> int:
    """The request's max tokens, else the template's, else DEFAULT_MAX_TOKENS."""
    value = params.get("max_tokens") or declared or DEFAULT_MAX_TOKENS
    return int(value)


def _literal(text: str) -> str:
    """A Lark string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _regex_escaped(text: str) -> str:
    """`text` as a literal inside a Lark /regex/ (Rust regex syntax): metacharacters and the slash escaped."""
    return "".join("\\" + c if c in _REGEX_META else c for c in text)


def _reasoning(budget: int, forbidden_line: str) -> str:
    """A rule for free text of at most `budget` tokens in which no line opens with `forbidden_line`."""
    escaped = _regex_escaped(forbidden_line)
    return f"thinking[max_tokens={budget}]: /(.|\\n)*/ & ~/(.|\\n)*\\n[ \\t]*{escaped}(.|\\n)*/"


def answer_grammar(
    prefix: str, max_tokens: int, numeric: bool = False, choices: list[str] | None = None
) -> str:
    """Reasoning, then a line "PREFIX ANSWER": a number, one of `choices`, or up to ANSWER_CHARS characters."""
    budget = max(MIN_REASONING, max_tokens - ANSWER_RESERVE)
    if choices:
        answer = " | ".join(_literal(c) for c in choices)
    else:
        answer = NUMBER if numeric else FREE
    return (
        f"start: thinking {_literal(chr(10) + prefix + ' ')} answer\n"
        f"{_reasoning(budget, prefix)}\n"
        f"answer: {answer}\n"
    )


def steps_grammar(count: int, prefix: str, numeric: bool = False) -> str:
    """Between one and `count` lines "- STEP" (tree-of-thoughts proposals), or the answer line itself."""
    answer = NUMBER if numeric else FREE
    return (
        f"start: step{{1,{count}}} | {_literal(prefix + ' ')} answer\n"
        f'step: "- " STEP "\\n"\n'
        f"STEP: /[^\\n]{{1,{STEP_CHARS}}}/\n"
        f"answer: {answer}\n"
    )


def numeric_answer(prompt_variables: dict[str, Any]) -> bool:
    """Whether the answer is a number: the template's `answer_format` variable says so ("a number")."""
    return "number" in str(prompt_variables.get("answer_format", ""))
