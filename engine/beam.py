"""Beam search with transformers' semantics: 2W candidates per step, length-normalised finished hypotheses.

A group's W beams live in W decode rows of the batch. Every step each beam's log-probabilities (penalised,
constrained and with bans before `min_tokens`) are added to its score; the best candidates either finish a
hypothesis (a stop token or the length limit) or become next step's beams, which take their parents' KV
blocks (shared, copied only when written). With an output constraint each beam carries its own matcher, copied
from its parent and advanced by the chosen token. Text is sent once, when the group finishes, because beams are
rearranged every step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from engine.request import Choice, Event, Request, Sequence
from engine.sampling import apply_penalties
from engine.tokens import TokenText

if TYPE_CHECKING:
    from engine.batch import DecodeBatch

DEAD = 1.0e9  # subtracted from a candidate's score to keep it out of the running beams


class BeamGroup:
    def __init__(self, request: Request, beams: list[Sequence]):
        self.request, self.beams = request, beams
        self.width = len(beams)
        self.scores = [0.0] + [-DEAD] * (self.width - 1)  # at first all beams are one: only beam 0 counts
        self.finished: list[tuple[float, list[int]]] = []
        self.improvable = True

    def step(self, batch: DecodeBatch, logits: torch.Tensor) -> None:
        """Advance every beam by one token. logits: [W, V]."""
        params, width = self.request.params, self.width
        logprobs = self._logprobs(batch, logits)  # [W, V]
        vocab = logprobs.shape[-1]
        total = logprobs + torch.tensor(self.scores)[:, None]
        keep = max(2, 1 + len(batch.eos_ids)) * width
        cand_scores, cand_ids = torch.topk(total.reshape(-1), keep)
        parents = (cand_ids // vocab).tolist()
        tokens = (cand_ids % vocab).tolist()
        cand_scores = cand_scores.tolist()
        generated = len(self.beams[0].tokens)  # tokens before this step, equal for all beams
        new_len = generated + 1
        hits = [
            batch.is_stop_token(params, t, generated)
            or new_len >= params.max_new_tokens
            or self._grammar_done(parents[i], t)
            for i, t in enumerate(tokens)
        ]
        self._record_finished(parents, tokens, cand_scores, hits, new_len)
        running = sorted(range(keep), key=lambda r: cand_scores[r] - (DEAD if hits[r] else 0.0), reverse=True)
        self._advance(batch, [parents[r] for r in running[:width]], [tokens[r] for r in running[:width]])
        self.scores = [cand_scores[r] - (DEAD if hits[r] else 0.0) for r in running[:width]]
        batch.stats["completion_tokens"] += width
        # transformers' stopping heuristic (early_stopping=False): can the best running beam still win?
        if len(self.finished) >= width:
            best_possible = self.scores[0] / (new_len**params.length_penalty)
            worst_finished = min(score for score, _ in self.finished)
            self.improvable = self.improvable and best_possible > worst_finished
        all_done = len(self.finished) >= width and params.early_stopping
        if not self.improvable or all_done or all(hits):
            self.finish(batch)

    def _logprobs(self, batch: DecodeBatch, logits: torch.Tensor) -> torch.Tensor:
        request, params = self.request, self.request.params
        raw = logits.float()
        if any(b.matcher is not None for b in self.beams):
            raw = torch.stack([b.matcher.mask(raw[i]) for i, b in enumerate(self.beams)])
        logprobs = torch.log_softmax(raw, -1)
        if params.has_penalties:
            logprobs = torch.stack(
                [
                    apply_penalties(
                        logprobs[i],
                        params,
                        torch.tensor(request.prompt_ids + b.tokens, dtype=torch.long),
                        torch.tensor(b.tokens, dtype=torch.long),
                    )
                    for i, b in enumerate(self.beams)
                ]
            )
        banned = batch.banned(params, len(self.beams[0].tokens))
        if banned:
            logprobs[:, banned] = float("-inf")
        return logprobs

    def _grammar_done(self, parent: int, token: int) -> bool:
        """With a constraint, a candidate after which the grammar allows nothing more ends its hypothesis."""
        matcher = self.beams[parent].matcher
        return matcher is not None and matcher.ends_after(token)

    def _record_finished(self, parents, tokens, cand_scores, hits, new_len) -> None:
        """Only the top `width` candidates may finish, scored with the length penalty."""
        params, width = self.request.params, self.width
        blocked = (len(self.finished) >= width and params.early_stopping) or not self.improvable
        if blocked:
            return
        for rank in range(width):
            if hits[rank]:
                final = self.beams[parents[rank]].tokens + [tokens[rank]]
                self.finished.append((cand_scores[rank] / (new_len**params.length_penalty), final))
        self.finished.sort(key=lambda item: item[0], reverse=True)
        del self.finished[width:]

    def _advance(self, batch: DecodeBatch, parents: list[int], tokens: list[int]) -> None:
        """The next step's beams: copy each parent's KV row (and matcher), then append the chosen token."""
        generated = len(self.beams[0].tokens)
        old_tokens = [list(b.tokens) for b in self.beams]
        old_matchers = [b.matcher for b in self.beams]
        if generated > 0:  # each beam takes its parent's blocks (shared until written); at 0 all are one
            tables = [self.beams[p].table.fork(batch.blocks) for p in parents]
            for beam, table in zip(self.beams, tables, strict=True):
                beam.table.release(batch.blocks)
                beam.table = table
        for beam, parent, token in zip(self.beams, parents, tokens, strict=True):
            beam.tokens = old_tokens[parent] + [token]
            if old_matchers[parent] is not None:
                beam.matcher = old_matchers[parent].fork()
                beam.matcher.advance(token)

    def finish(self, batch: DecodeBatch) -> None:
        """Turn the best finished hypotheses into the request's choices and send them."""
        request, params = self.request, self.request.params
        choices = []
        for index, (score, token_ids) in enumerate(self.finished[: params.n]):
            text = TokenText(batch.tokenizer, params.skip_special_tokens)
            finish = "length"
            for token in token_ids:
                if batch.is_stop_token(params, token, params.min_tokens):
                    finish = "stop"
                    break
                text.append(token)
            else:
                if request.constraint is not None and len(token_ids) < params.max_new_tokens:
                    finish = "stop"  # the grammar ended the hypothesis
            choices.append(Choice(index, token_ids, text.text(), finish, score=score))
        request.choices = choices  # recorded before any "done" is heard, so usage is complete
        for choice in choices:
            request.emit(Event("delta", choice.index, choice.text, choice.token_ids))
            request.emit(Event("done", choice.index, finish_reason=choice.finish_reason))
        for beam in self.beams:
            beam.finished = "beam"
        del batch.groups[request.id]
        request.done = True
