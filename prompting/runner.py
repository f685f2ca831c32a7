"""The batch runner: versions x providers x cases x repeats, concurrent, cached and resumable.

The runner never touches the store. The caller passes the cells already finished (they are skipped) and a
`sink` that receives each finished cell, in the caller's thread, as soon as it completes; the CLI and the UI
wire the sink to the store, so every result is committed on its own and a killed run resumes exactly where it
stopped. Errors (network, timeout, bad response, a prompt that cannot render) are recorded per cell and kept
apart from assertion failures.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Protocol

from prompting import dialogue
from prompting.assertions import AssertionResult, Context, base_type, case_score, evaluate
from prompting.conversation import Transcript, is_conversation
from prompting.errors import PromptingError
from prompting.providers import Completion, Provider, Usage
from prompting.strategies import Prompt, StrategyOutput, run_strategy
from prompting.summary import Summary


@dataclass(frozen=True)
class Cell:
    case_id: int
    version_id: int
    provider_id: int
    repeat_index: int


@dataclass
class CaseSpec:
    id: int
    vars: dict[str, Any] = field(default_factory=dict)
    assertions: list[dict[str, Any]] = field(default_factory=list)
    threshold: float | None = None
    description: str = ""


@dataclass
class VersionSpec:
    id: int
    prompt: Prompt
    label: str = ""
    params: dict[str, Any] = field(
        default_factory=dict
    )  # a prompt's own request fields (response_format, tools)


@dataclass
class ProviderHandle:
    id: int
    provider: Provider


@dataclass
class CellResult:
    cell: Cell
    messages: list[dict[str, str]] = field(default_factory=list)
    output: str | None = None
    answer: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    logprobs: dict[str, Any] | None = None
    usage: Usage = field(default_factory=Usage)
    cached: bool = False
    error: str | None = None
    passed: bool | None = None
    score: float | None = None
    assertions: list[AssertionResult] = field(default_factory=list)

    @property
    def latency_ms(self) -> float:
        return self.usage.latency_ms

    @property
    def tokens_in(self) -> int:
        return self.usage.tokens_in

    @property
    def tokens_out(self) -> int:
        return self.usage.tokens_out

    @property
    def cost(self) -> float:
        return self.usage.cost


@dataclass
class Progress:
    done: int
    total: int
    passed: int
    failed: int
    errors: int
    elapsed_s: float

    def count(self, result: CellResult, elapsed_s: float) -> None:
        self.done += 1
        if result.error:
            self.errors += 1
        elif result.passed:
            self.passed += 1
        else:
            self.failed += 1
        self.elapsed_s = elapsed_s

    @property
    def eta_s(self) -> float | None:
        if self.done == 0:
            return None
        return self.elapsed_s / self.done * (self.total - self.done)


class Cache(Protocol):
    def get(self, key: str) -> dict | None: ...
    def put(self, key: str, response: dict, scope: str) -> None: ...


class Interrupted(Exception):
    """The run was stopped (Ctrl-C or a stop request); what finished is already in the sink."""


def effective_strategy(override: dict[str, Any] | None, template) -> dict[str, Any]:
    """The strategy a version runs with: an explicit override (suite, CLI, page), else what its template declares
    (with the declared parameters), else a single call."""
    from prompting.strategies import STRATEGIES

    if override and override.get("name"):
        return dict(override)
    declared = dict(template.strategy or {"name": "single"})
    # a technique that is not a per-cell strategy (APE proposes instructions over a whole suite) runs as one call
    return declared if declared.get("name") in STRATEGIES else {"name": "single"}


def constrained(params: dict[str, Any], prompt: Prompt, provider: Provider) -> dict[str, Any]:
    """A version whose guardrails carry a JSON schema asks a provider that constrains decoding for it
    (`response_format`), unless the request already sets one or the provider is switched off (`constrain: false`
    in its configuration; on by default for the local engine)."""
    schema = prompt.guardrails.json_schema if prompt.guardrails else None
    if not schema or "response_format" in params or not constrains(provider):
        return params
    return {
        **params,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": True},
        },
    }


def constrains(provider: Provider) -> bool:
    default = provider.spec.kind == "local"
    return bool(provider.capabilities.structured_output and provider.spec.params.get("constrain", default))


def constraint_kind(params: dict[str, Any]) -> str:
    if "tools" in params:
        return f"tools ({params.get('tool_choice', 'auto')})"
    return str((params.get("response_format") or {}).get("type", "response_format"))


CACHE_POLICIES = ("reuse", "fresh")  # reuse: deterministic answers from any run; fresh: only this run's own


def deterministic(provider: Provider, params: dict[str, Any]) -> bool:
    """Whether a request's answer does not depend on chance: greedy (temperature 0), beam search, or an explicit
    seed. An unset temperature is the endpoint's default (1.0 for OpenAI and our engine): sampled."""
    merged = {**provider.spec.params, **params}
    if merged.get("seed") is not None or merged.get("use_beam_search"):
        return True
    temperature = merged.get("temperature")
    return temperature is not None and float(temperature) == 0.0


def cache_scope(policy: str, run_id: str, is_deterministic: bool) -> str | None:
    """Where a response may be reused: "shared" (any run: a deterministic request under the reuse policy),
    "run:ID" (only inside its own run, so a resumed run does not pay twice; sampled requests, and every request
    of a fresh run), or None (no run to scope it to: not cached)."""
    if policy not in CACHE_POLICIES:
        raise PromptingError(f"unknown cache policy '{policy}'; choose one of: {', '.join(CACHE_POLICIES)}")
    if is_deterministic and policy == "reuse":
        return "shared"
    return f"run:{run_id}" if run_id else None


def cache_key(
    provider: Provider, messages: list[dict[str, str]], params: dict[str, Any], repeat_index: int, scope: str
) -> str:
    """The request's identity within its scope: provider (with its configured parameters), messages, request
    parameters and the repeat index (so repeats of a sampled cell are separate draws)."""
    payload = {
        "provider": provider.label,
        "model": provider.model_id,
        "provider_params": provider.spec.params,
        "messages": messages,
        "params": params,
        "repeat": repeat_index,
        "scope": scope,
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def plan(
    versions: list[VersionSpec], providers: list[ProviderHandle], cases: list[CaseSpec], repeats: int
) -> list[Cell]:
    return [
        Cell(c.id, v.id, p.id, r) for v in versions for p in providers for c in cases for r in range(repeats)
    ]


@dataclass
class Runner:
    versions: list[VersionSpec]
    providers: list[ProviderHandle]
    cases: list[CaseSpec]
    repeats: int = 1
    strategy: dict[str, Any] = field(default_factory=dict)  # an override; empty: each template's declared one
    params: dict[str, Any] = field(default_factory=dict)
    concurrency: int = 4
    cache: Cache | None = None
    # see cache_scope: sampled answers are never shared across runs; run_id scopes this run's own entries
    # (resume), and without one a sampled call is not cached at all
    cache_policy: str = "reuse"
    run_id: str = ""
    embed: Callable[[list[str]], list[list[float]]] | None = None
    judge: Callable[[str], str] | None = None
    # the simulated user's provider, by the label a case names (None: the local default model)
    simulator: Callable[[str | None], Provider] | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def run(
        self,
        done: set[tuple] | set[Cell],
        sink: Callable[[CellResult], None],
        progress: Callable[[Progress], None] | None = None,
    ) -> Progress:
        """Run every cell not in `done`; each finished cell goes to `sink` at once. Raises Interrupted if stopped."""
        finished = {Cell(*c) if not isinstance(c, Cell) else c for c in done}
        cells = plan(self.versions, self.providers, self.cases, self.repeats)
        todo = [c for c in cells if c not in finished]
        return self.run_cells(todo, sink, progress, done=len(cells) - len(todo), total=len(cells))

    def run_cells(
        self,
        todo: Iterable[Cell],
        sink: Callable[[CellResult], None],
        progress: Callable[[Progress], None] | None = None,
        *,
        done: int = 0,
        total: int = 0,
    ) -> Progress:
        """Run the cells `todo` yields, at most `concurrency` at a time. The iterator is advanced only when a slot
        is free, so a caller can hand out cells lazily (the worker claims them from the database one by one)."""
        state = Progress(done=done, total=total, passed=0, failed=0, errors=0, elapsed_s=0.0)
        start = time.perf_counter()
        if progress:
            progress(replace(state))
        pending: set[Future] = set()
        queue = iter(todo)
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            try:
                while True:
                    self._fill(pool, pending, queue)
                    if not pending:
                        break
                    completed, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in completed:
                        result = future.result()
                        sink(result)
                        state.count(result, time.perf_counter() - start)
                        if progress:
                            progress(replace(state))  # a snapshot: callers may keep it
            except KeyboardInterrupt:
                self.stop.set()
                for future in pending:
                    future.cancel()
                raise
        if self.stop.is_set() and (state.done < state.total or not state.total):
            raise Interrupted(f"stopped after {state.done} of {state.total} cells")
        return state

    def _fill(self, pool: ThreadPoolExecutor, pending: set[Future], queue: Iterator[Cell]) -> None:
        while len(pending) < self.concurrency and not self.stop.is_set():
            cell = next(queue, None)
            if cell is None:
                return
            pending.add(pool.submit(self.run_cell, cell, *self.inputs(cell)))

    @cached_property
    def _lookup(self) -> tuple[dict, dict, dict]:
        return (
            {v.id: v for v in self.versions},
            {p.id: p.provider for p in self.providers},
            {c.id: c for c in self.cases},
        )

    def inputs(self, cell: Cell) -> tuple[VersionSpec, Provider, CaseSpec]:
        """The version, provider and case a cell names."""
        versions, providers, cases = self._lookup
        return versions[cell.version_id], providers[cell.provider_id], cases[cell.case_id]

    def cached_call(self, provider: Provider, repeat_index: int) -> Callable[..., Completion]:
        """The call strategies make: through the cache within the request's scope (`cache_scope`), then the
        model. The repeat index is part of the key, so repeats of a cell are separate requests."""

        def call(messages: list[dict[str, str]], call_params: dict[str, Any]) -> Completion:
            if self.cache is None:
                return provider.chat(messages, **call_params)
            scope = cache_scope(self.cache_policy, self.run_id, deterministic(provider, call_params))
            if scope is None:
                return provider.chat(messages, **call_params)
            key = cache_key(provider, messages, call_params, repeat_index, scope)
            hit = self.cache.get(key)
            if hit is not None:
                return Completion.from_dict(hit, cached=True)
            completion = provider.chat(messages, **call_params)
            self.cache.put(key, completion.to_dict(), scope)
            return completion

        return call

    def run_cell(self, cell: Cell, version: VersionSpec, provider: Provider, case: CaseSpec) -> CellResult:
        result = CellResult(cell)
        strategy = effective_strategy(self.strategy, version.prompt.template)
        params = constrained(
            {**self.params, **version.params, **strategy.get("params", {})}, version.prompt, provider
        )

        call = self.cached_call(provider, cell.repeat_index)
        needs_logprobs = any(base_type(str(a.get("type", "")))[0] == "perplexity" for a in case.assertions)
        if needs_logprobs and provider.capabilities.logprobs:
            params.setdefault("logprobs", True)
        options = {k: v for k, v in strategy.items() if k not in ("name", "params")}
        options.setdefault("constrain_answers", constrains(provider))
        try:
            options["ask_user"] = dialogue.user_simulator(
                case.vars, self.simulator, case.id, cell.repeat_index
            )
            out: StrategyOutput = run_strategy(
                strategy.get("name", "single"),
                version.prompt,
                case.vars,
                provider,
                call,
                params,
                options,
            )
        except PromptingError as exc:
            result.error = str(exc)
            return result
        except Exception as exc:  # a bug or an unexpected response must cost one cell, not the run
            result.error = f"{type(exc).__name__}: {exc}"
            return result
        fill_result(result, out, params)
        ctx = Context(
            vars=case.vars,
            latency_ms=out.usage.latency_ms,
            cost=out.usage.cost,
            logprobs=out.logprobs,
            answer_pattern=version.prompt.template.answer_pattern,
            answer=out.answer,
            embed=self.embed,
            judge=self.judge,
            tools=params.get("tools"),
            tool_calls=out.detail.get("tool_calls"),
            messages=out.messages,
            delimiter=version.prompt.delimiter,
        )
        try:
            if is_conversation(case.vars):
                result.assertions = dialogue.judge(case.assertions, Transcript.from_detail(out.detail), ctx)
                result.detail = {**result.detail, "turns": dialogue.turn_verdicts(result.assertions)}
            else:
                result.assertions = [evaluate(a, out.output, ctx) for a in case.assertions]
        except PromptingError as exc:
            result.error = f"assertion could not run: {exc}"
            return result
        result.passed, result.score = case_score(result.assertions, case.threshold)
        return result


def fill_result(result: CellResult, out: StrategyOutput, params: dict[str, Any]) -> None:
    """Copies what a strategy produced onto the cell's result."""
    result.messages, result.output, result.answer = out.messages, out.output, out.answer
    result.detail, result.usage, result.cached = out.detail, out.usage, out.cached
    if out.logprobs:
        total = sum(out.logprobs)
        result.logprobs = {"tokens": len(out.logprobs), "sum": total, "mean": total / len(out.logprobs)}
    if "response_format" in params or "tools" in params:
        result.detail = out.detail = {**out.detail, "constrained": constraint_kind(params)}
    if out.cached_calls:
        result.detail = {**result.detail, "cached_calls": out.cached_calls, "calls": out.usage.calls}


# --- section ablation and the quantization sweep --------------------------------------------------------


def ablation_variants(prompt: Prompt) -> list[tuple[str, Prompt]]:
    """The full prompt, then one variant per dropped part: each section, the guardrail block, each example."""
    variants = [("full", prompt)]
    for section in prompt.template.sections:
        variants.append(
            (
                f"-{section}",
                Prompt(
                    prompt.template,
                    dict(prompt.variables),
                    prompt.delimiter,
                    prompt.guardrails,
                    (*prompt.drop_sections, section),
                ),
            )
        )
    if prompt.guardrails is not None and not prompt.guardrails.is_empty():
        variants.append(
            (
                "-guardrails",
                Prompt(prompt.template, dict(prompt.variables), prompt.delimiter, None, prompt.drop_sections),
            )
        )
    examples = prompt.variables.get("examples")
    if isinstance(examples, list) and len(examples) > 1:
        for i in range(len(examples)):
            kept = [e for j, e in enumerate(examples) if j != i]
            variants.append(
                (
                    f"-example {i + 1}",
                    Prompt(
                        prompt.template,
                        {**prompt.variables, "examples": kept},
                        prompt.delimiter,
                        prompt.guardrails,
                        prompt.drop_sections,
                    ),
                )
            )
    return variants


def ape_ranking(
    cases: list[CaseSpec],
    provider: Provider,
    m: int = 5,
    params: dict[str, Any] | None = None,
    concurrency: int = 4,
) -> list[dict[str, Any]]:
    """Automatic prompt engineering on a suite: the `ape` template proposes m instructions from the cases'
    (input, expected output) pairs, each instruction runs as a zero-shot prompt over every case, and the
    instructions are ranked by pass rate. Cases need an `input` variable; the first assertion's value is the
    example output."""
    from prompting.strategies import ape, ape_proposals
    from prompting.templates import load

    examples = [
        {"input": c.vars["input"], "output": c.assertions[0].get("value")}
        for c in cases
        if "input" in c.vars and c.assertions
    ]
    if not examples:
        raise PromptingError(
            "APE needs cases with an `input` variable and at least one assertion with a value"
        )
    zero_shot = load("zero_shot")

    def evaluate(instruction: str) -> float:
        version = VersionSpec(1, Prompt(zero_shot, {"instruction": instruction}))
        results: list[CellResult] = []
        Runner(
            [version],
            [ProviderHandle(1, provider)],
            cases,
            params=dict(params or {}),
            concurrency=concurrency,
        ).run(set(), results.append)
        return Summary.of(results).pass_rate or 0.0

    return ape(lambda count: ape_proposals(Prompt(load("ape")), examples[:8], provider, count), evaluate, m)
