"""Output constraints: a JSON schema, a regex, a list of choices or a Lark/GBNF grammar, enforced token by token.

We use llguidance (a grammar engine built for this) to compile a constraint once per request (`compile_grammar`,
cached by its text) into a `Grammar`; every decode row then gets its own `RowMatcher`, so rows of one batch keep
independent states (n samples, beams, unrelated requests, unconstrained rows beside constrained ones). Before a
row samples, `RowMatcher.mask` sets every token the grammar forbids to -inf, so sampling, greedy choice and the
reported log-probabilities all see the constrained distribution; after it samples, `advance` feeds the token
back. A grammar that is complete (nothing may follow but end-of-sequence) ends the row with "stop".
A bad constraint is an `EngineError` naming the request parameter it came from.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import llguidance
import llguidance.hf as llguidance_hf
import torch
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from llguidance.gbnf_to_lark import gbnf_to_lark

from engine.errors import EngineError
from engine.tokens import token_bytes

MAX_CONSTRAINT_CHARS = 100_000  # a schema, regex, grammar or choice list longer than this is refused
MAX_CHOICES = 1_000
COMPILED_CACHE = 64  # compiled grammars kept, keyed by their text (the same schema is usually sent again)
# Compact JSON with fixed separators: a small model cannot wander off into endless whitespace inside a value.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
# A JSON number without `multipleOf` is decoded with at most this many fraction digits: a small model otherwise
# tends to write "1.0000000…" until max_tokens, which is never valid JSON. The output still matches the schema.
MAX_FRACTION_DIGITS = 6
KINDS = ("json", "regex", "choice", "grammar", "lark")  # lark: our own grammars, never read as GBNF
_BIT = torch.arange(32, dtype=torch.int32)  # bit i of a mask word is token 32*word + i


@dataclass(frozen=True)
class ConstraintSpec:
    """What a request asks for, before compiling: kind, its text, and the request field it came from."""

    kind: str  # one of KINDS
    value: Any  # json: a schema (dict or JSON text); regex/grammar: text; choice: a list of strings
    param: str  # the request field to name in errors, e.g. "response_format.json_schema.schema"


class Grammar:
    """A compiled constraint; `matcher()` gives each decode row its own state."""

    def __init__(self, prototype: llguidance.LLMatcher, vocab: int, spec: ConstraintSpec):
        self._prototype, self.vocab, self.spec = prototype, vocab, spec

    def matcher(self) -> RowMatcher:
        return RowMatcher(self._prototype.deep_copy(), self.vocab)


class RowMatcher:
    """One decode row's grammar state."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab: int):
        self.state, self.vocab = matcher, vocab
        self._words = torch.zeros((vocab + 31) // 32, dtype=torch.int32)

    def allowed(self) -> torch.Tensor:
        """The tokens the grammar allows next: bool [V]."""
        self.state.unsafe_compute_mask_ptr(self._words.data_ptr(), self._words.numel() * 4)
        bits = (self._words.unsqueeze(-1) >> _BIT) & 1  # [words, 32]
        return bits.view(-1)[: self.vocab].bool()

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [V] with every forbidden token at -inf (a new tensor)."""
        return logits.masked_fill(~self.allowed(), float("-inf"))

    def advance(self, token: int) -> None:
        self.state.consume_token(int(token))

    def forced(self, limit: int) -> list[int]:
        """Up to `limit` tokens the grammar forces next (a schema's keys and punctuation): a draft the model is
        then asked to confirm, like any other (it may still pick another tokenization of the same text)."""
        return self.state.compute_ff_tokens()[:limit] if limit > 0 else []

    def valid_prefix(self, tokens: list[int]) -> list[int]:
        """The longest prefix of `tokens` the grammar accepts from here (a draft cut where it would break it)."""
        return tokens[: self.state.validate_tokens(tokens)] if tokens else []

    @property
    def done(self) -> bool:
        """Nothing more may be generated (the grammar is complete, or the matcher failed)."""
        return self.state.is_stopped()

    def fork(self) -> RowMatcher:
        return RowMatcher(self.state.deep_copy(), self.vocab)

    def ends_after(self, token: int) -> bool:
        """Would the grammar be complete after `token`? (beam search asks this of every candidate)"""
        probe = self.state.deep_copy()
        probe.consume_token(int(token))
        return probe.is_stopped()


# --- compiling -------------------------------------------------------------------------------------------


class GrammarTokenizer:
    """The engine tokenizer as llguidance sees it, built once per engine (about a second for a real vocabulary)."""

    def __init__(self, tokenizer: Any, vocab: int, eos_ids: set[int]):
        self._tokenizer, self.vocab, self._eos = tokenizer, vocab, sorted(eos_ids)
        self._built: llguidance.LLTokenizer | None = None
        self._lock = threading.Lock()

    def get(self) -> llguidance.LLTokenizer:
        with self._lock:
            if self._built is None:
                self._built = _build_tokenizer(self._tokenizer, self.vocab, self._eos)
            return self._built


def _build_tokenizer(tokenizer: Any, vocab: int, eos: list[int]) -> llguidance.LLTokenizer:
    if hasattr(tokenizer, "backend_tokenizer"):  # a fast HF tokenizer: llguidance reads its own definition
        return llguidance_hf.from_tokenizer(tokenizer, n_vocab=vocab, eos_token=eos)
    # Any other tokenizer: describe it by each token's bytes (byte-level BPE, or our tests' byte tokenizer).
    wrapper = _TokenTable(tokenizer, vocab, eos[0])
    return llguidance.LLTokenizer(llguidance.TokenizerWrapper(wrapper), n_vocab=vocab, eos_token=eos)


class _TokenTable:
    """The minimal tokenizer interface llguidance's TokenizerWrapper reads."""

    def __init__(self, tokenizer: Any, vocab: int, eos: int):
        self._tokenizer = tokenizer
        self.eos_token_id, self.bos_token_id = eos, None
        self.tokens = [b"" if i == eos else token_bytes(tokenizer, i) for i in range(vocab)]
        self.special_token_ids = [eos]

    def __call__(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text))


def compile_grammar(tokens: GrammarTokenizer, spec: ConstraintSpec) -> Grammar:
    """Compile a request's constraint, or raise EngineError naming `spec.param`. Cached by the grammar text."""
    try:
        grammar = grammar_text(spec)
        prototype = _compiled(tokens, grammar, spec.param)
    except EngineError:
        raise
    except Exception as exc:  # llguidance refuses what it cannot read (e.g. text that is not valid Unicode)
        raise EngineError(f"{spec.param} cannot be compiled: {exc}", spec.param) from None
    return Grammar(prototype, tokens.vocab, spec)


def grammar_text(spec: ConstraintSpec) -> str:
    """The constraint as llguidance's grammar text (validated as far as it can be without a tokenizer)."""
    if spec.kind not in KINDS:
        raise EngineError(f"unknown constraint kind {spec.kind!r}; known: {', '.join(KINDS)}", spec.param)
    if len(json.dumps(spec.value) if not isinstance(spec.value, str) else spec.value) > MAX_CONSTRAINT_CHARS:
        raise EngineError(f"{spec.param} is longer than {MAX_CONSTRAINT_CHARS} characters", spec.param)
    if spec.kind == "json":
        return llguidance.LLMatcher.grammar_from_json_schema(
            bounded_numbers(_schema(spec)), defaults=JSON_OPTIONS
        )
    if spec.kind == "regex":
        return llguidance.LLMatcher.grammar_from_regex(ascii_classes(spec.value))
    if spec.kind == "choice":
        return llguidance.LLMatcher.grammar_from_regex(choice_regex(spec))
    text = spec.value
    if spec.kind == "lark":
        return llguidance.LLMatcher.grammar_from_lark(text)
    try:  # llama.cpp's GBNF (rules with ::=) is translated; anything else is read as Lark
        lark = gbnf_to_lark(text) if "::=" in text else text
    except Exception as exc:
        raise EngineError(f"{spec.param} is not a valid GBNF grammar: {exc}", spec.param) from None
    return llguidance.LLMatcher.grammar_from_lark(lark)


def _schema(spec: ConstraintSpec) -> dict[str, Any]:
    schema = spec.value
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise EngineError(f"{spec.param} is not valid JSON: {exc}", spec.param) from None
    if not isinstance(schema, dict):
        raise EngineError(f"{spec.param} must be a JSON schema object", spec.param)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise EngineError(f"{spec.param} is not a valid JSON schema: {exc.message}", spec.param) from None
    return schema


def bounded_numbers(schema: Any) -> Any:
    """A copy of the schema in which every number without `multipleOf` gets one of 10^-MAX_FRACTION_DIGITS."""
    if isinstance(schema, list):
        return [bounded_numbers(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: bounded_numbers(value) for key, value in schema.items()}
    kinds = schema.get("type")
    if (kinds == "number" or (isinstance(kinds, list) and "number" in kinds)) and "multipleOf" not in schema:
        out["multipleOf"] = 10.0**-MAX_FRACTION_DIGITS
    return out


# Rust regex syntax (llguidance's): these characters are special and must be escaped to match themselves.
_REGEX_META = set("\\.+*?()|[]{}^$#&-~")


# JSON Schema's and JavaScript's meaning of \d and \w (ASCII), not Rust's Unicode one (which lets a model write
# digits from other scripts). Rust regexes nest classes, so the same text works inside [...] as well.
_ASCII_CLASSES = {"d": "[0-9]", "D": "[^0-9]", "w": "[0-9A-Za-z_]", "W": "[^0-9A-Za-z_]"}


def ascii_classes(regex: str) -> str:
    out, i = [], 0
    while i < len(regex):
        if regex[i] == "\\" and i + 1 < len(regex):
            pair = regex[i : i + 2]
            out.append(_ASCII_CLASSES.get(pair[1], pair))
            i += 2
        else:
            out.append(regex[i])
            i += 1
    return "".join(out)


def choice_regex(spec: ConstraintSpec) -> str:
    choices = spec.value
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
        raise EngineError(f"{spec.param} must be a non-empty list of non-empty strings", spec.param)
    if len(choices) > MAX_CHOICES:
        raise EngineError(f"{spec.param} may hold at most {MAX_CHOICES} choices", spec.param)
    escaped = ["".join("\\" + ch if ch in _REGEX_META else ch for ch in c) for c in choices]
    return "(" + "|".join(escaped) + ")"


@lru_cache(maxsize=COMPILED_CACHE)
def _compiled(tokens: GrammarTokenizer, grammar: str, param: str) -> llguidance.LLMatcher:
    tokenizer = tokens.get()
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
    if is_error:
        raise EngineError(f"{param} cannot be compiled: {messages[0]}", param)
    matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
    if matcher.is_error():
        raise EngineError(f"{param} cannot be compiled: {matcher.get_error()}", param)
    return matcher
