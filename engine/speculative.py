"""Prompt-lookup speculative decoding: draft tokens copied from the context, verified in the row's next forward.

A row (greedy or sampled; not beams) whose last few tokens (an n-gram of NGRAM_SIZES tokens, the longest first)
occurred earlier in its prompt or its own output proposes the tokens that followed that occurrence as a draft.
The decode step feeds the row's last token and the draft as one segment (engine/attention.py) and gets logits at
every position; the row then chooses its tokens one position at a time exactly as plain decoding would
(`DecodeBatch.sample_next`) and stops at the first choice that differs from the draft. So the output is plain
decoding's, token for token (for a sampled row too: see `speculates`), while a run of k correct draft tokens
costs one forward instead of k + 1. That holds because every op of the forward computes a token's row
independently of the others in the step (the int4/int8 matmuls, the paged attention kernel, the norms); tests
assert the identity.

A row constrained by a grammar (engine/constraints.py) drafts the tokens its grammar forces next (a JSON
schema's keys and punctuation) when there are any, else its lookup draft cut to what the grammar accepts; its
choices are still masked position by position as plain constrained decoding's are, so the identity holds.

It pays where outputs copy their input (extraction, classification into given labels, rewriting, quoting a
document), which is most of what a suite runs. Where it does not, a wrong draft costs a wider forward: a row's
draft shrinks after each miss and grows back after hits, and rows stop drafting when the batch is wide (there the
step is bound by arithmetic, not by its per-op overhead, and extra positions are not free).
"""

from __future__ import annotations

from typing import Any

from engine.request import Sequence

NGRAM_SIZES = (3, 2)  # suffix lengths looked up, longest first
MAX_SPECULATING_ROWS = 4  # above this many running rows, nobody drafts


class PromptLookup:
    """One row's index of the n-grams in its context (prompt + output), the latest occurrence of each, kept up
    to date as tokens are appended; and its adaptive draft length."""

    def __init__(self, sequence: Sequence, max_draft: int):
        self.sequence = sequence
        self.prompt = sequence.request.prompt_ids
        self.max_draft = self.draft_length = max_draft
        self.seen: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in NGRAM_SIZES}
        self.indexed = 0  # context positions whose preceding n-grams are in `seen`
        self.forced = False  # the last draft was the grammar's forced tokens, not a lookup

    def _context(self) -> list[int]:
        return self.prompt + self.sequence.tokens

    def _index(self, context: list[int]) -> None:
        """Record, for each position i, the n-grams ending just before it: a later match proposes context[i:]."""
        for i in range(max(self.indexed, 1), len(context)):
            for n in NGRAM_SIZES:
                if i >= n:
                    self.seen[n][tuple(context[i - n : i])] = i
        self.indexed = len(context)

    def propose(self, limit: int) -> list[int]:
        """The row's draft of at most `limit` tokens: its grammar's forced tokens (up to the longest draft, not the
        adaptive length: they are nearly always accepted) if it has a grammar that forces any, else the lookup's,
        cut to what the grammar accepts."""
        matcher = self.sequence.matcher
        forced = matcher.forced(min(limit, self.max_draft)) if matcher is not None else []
        self.forced = bool(forced)
        if forced:
            return forced
        draft = self.lookup(limit)
        return matcher.valid_prefix(draft) if matcher is not None else draft

    def lookup(self, limit: int) -> list[int]:
        """Up to min(limit, the current draft length) tokens that followed the latest earlier occurrence of the
        context's longest matching suffix; [] when nothing matches."""
        budget = min(limit, self.draft_length)
        if budget <= 0:
            return []
        context = self._context()
        self._index(context)
        for n in NGRAM_SIZES:
            if len(context) <= n:
                continue
            start = self.seen[n].get(tuple(context[-n:]))
            if start is not None and start < len(context):
                return context[start : start + budget]
        return []

    def record(self, drafted: int, accepted: int) -> None:
        """Adapt the draft length: all accepted grows it by one, a miss shrinks it to what was accepted + 1.
        Forced drafts leave it alone: they say nothing about how well lookups guess."""
        if self.forced:
            return
        if accepted == drafted:
            self.draft_length = min(self.max_draft, self.draft_length + 1)
        else:
            self.draft_length = max(1, accepted + 1)


def rows_exact(model: Any, pool: Any) -> bool:
    """Whether every op of a forward computes a token's row alone, so its result never depends on the other
    tokens of the call: the method's linears (int8, int4, GPTQ/AWQ/RTN, SmoothQuant; fp32/bf16 GEMMs and NF4's
    dequantize-and-matmul change blocking with the row count, and LLM.int8() picks outlier columns over all rows)
    and the C++ attention kernel (the torch fallback masks a multi-token segment, which rounds differently from
    a single token's attention). Speculative verification and prompts prefilled together rest on it."""
    from engine.attention import native_for
    from engine.quantize import rows_independent

    return rows_independent(model) and native_for(pool) is not None


def speculates(sequence: Sequence) -> bool:
    """Every row but beams. A greedy row's choice at each position is the argmax of known (masked) logits; a
    sampled row's is one draw from its own generator over the same distribution plain decoding would have, so
    verification (keep the draft while the drawn token equals it) is speculative sampling with a deterministic
    draft: a drafted token is kept with exactly its probability p(token), and on a miss the drawn token is a draw
    from the rest of the distribution. It goes further: the generator is consumed once per kept position, as in
    plain decoding, so a seeded sampled request gets the same tokens with or without drafts."""
    return not sequence.request.params.use_beam_search
