"""Prompt optimisation: the protocol (held-out cases never reach the proposer, evaluated once), the winner saved
as a child version with its lineage, resumption after an interruption without repeating evaluations, a null
control that finds no gain in noise, and the refusals of bad requests."""

from __future__ import annotations

import hashlib
import re

import pytest

from prompting.optimize import OptimizeError
from prompting.providers import ProviderSpec
from services import open_store, versions
from services.optimize import Budget, Request, submit_optimization
from services.specs import save_provider
from services.worker import Worker
from tests.fakes import FakeProvider

WORDS = {"positive": "love", "negative": "hate", "neutral": "own"}
GOOD = "Answer with exactly one word: positive, negative or neutral."
TARGET = ProviderSpec(label="fake:target", kind="remote", model="fake-model", base_url="http://fake")
PROPOSER = ProviderSpec(label="fake:proposer", kind="remote", model="fake-model", base_url="http://fake")


def sentiment_cases(n: int = 45) -> list[dict]:
    labels = list(WORDS)
    return [
        {
            "vars": {"input": f"Review {i}: I {WORDS[labels[i % 3]]} this gadget number {i}."},
            "assertions": [{"type": "answer-equals", "value": labels[i % 3]}],
            "tags": [labels[i % 3]],
        }
        for i in range(n)
    ]


def label_of(text: str) -> str:
    return next(label for label, word in WORDS.items() if f" {word} " in text)


def target_reply(messages: list[dict], params: dict) -> str:
    """Right in the expected form only when the prompt says how to answer (the good instruction) or shows two or
    more demonstrations; otherwise right in substance but wordy, which `answer-equals` fails."""
    text = "\n".join(m["content"] for m in messages)
    label = label_of(messages[-1]["content"])
    demos = sum(1 for m in messages if m["role"] == "assistant")
    if "exactly one word" in text or demos >= 2:
        return label
    return f"I think the sentiment of this review is {label}, overall"


def setup(store, cases: list[dict], name: str = "sentiment"):
    store.save_suite(name, cases)
    version = versions.save(store, "zero_shot", {"instruction": "Classify the review."}, "hash", None)
    return version


def submit_sentiment():
    """A queued optimisation of the sentiment suite (300 cells) and the fakes that answer it."""
    store = open_store()
    base = setup(store, sentiment_cases())
    target = FakeProvider(target_reply, label="fake:target")
    proposer = FakeProvider(f"Instruction: {GOOD}", label="fake:proposer")
    opt_id = submit_optimization(store, Request("sentiment", base.id, TARGET, PROPOSER, Budget(cells=300)))
    ids = {save_provider(store, TARGET).id: target, save_provider(store, PROPOSER).id: proposer}
    return store, base, opt_id, target, ids


def drive(store, providers) -> None:
    with Worker(store, providers=providers) as worker:
        worker.drain()


def test_the_optimizer_finds_the_gain_proves_it_on_held_out_cases_and_saves_the_winner():
    store = open_store()
    cases = sentiment_cases()
    base = setup(store, cases)
    proposer = FakeProvider(f"Instruction: {GOOD}", label="fake:proposer")
    target = FakeProvider(target_reply, label="fake:target")
    opt_id = submit_optimization(
        store, Request("sentiment", base.id, TARGET, PROPOSER, Budget(cells=400), seed=3)
    )
    ids = {save_provider(store, TARGET).id: target, save_provider(store, PROPOSER).id: proposer}
    drive(store, ids)
    row = store.get_optimization(opt_id)
    assert row.status == "completed", row.error
    report = row.report
    assert report["chosen"] and report["heldout"]["cases"] == len(row.state["split"]["heldout"])
    assert report["heldout"]["baseline"] == 0.0 and report["heldout"]["winner"] == 1.0
    low, high = report["heldout"]["delta_ci"]
    assert low > 0 and report["verdict"].startswith("+100 points on 15 unseen cases")
    assert report["spent"]["cells"] <= 400
    # held-out (and validation) inputs never reached the proposer: it saw training cases only
    seen = "\n".join(m["content"] for call in proposer.calls for m in call["messages"])
    by_id = {c.id: c.vars["input"] for c in store.suite_cases(row.suite_id)}
    for case_id in row.state["split"]["heldout"] + row.state["split"]["validation"]:
        assert by_id[case_id] not in seen
    assert any(by_id[i] in seen for i in row.state["split"]["train"])
    # the winner is a child version of the starting one, labelled, with its lineage
    saved = store.get_version(report["saved"][0])
    assert saved.parent_id == base.id and saved.kind == "user" and saved.name == base.name
    assert saved.options["lineage"]["optimization"] == opt_id
    from services.labels import labels

    assert any(lb.label == "optimized" and lb.version == saved.label for lb in labels(store, base.name))
    assert versions.diff(store, base.id, saved.id)


def test_an_interrupted_optimization_resumes_without_repeating_an_evaluation():
    store, base, opt_id, target, ids = submit_sentiment()
    with Worker(store, providers=ids) as first:
        original = first.work_on

        def work_then_die(run_id, progress=None):
            if len(target.calls) >= 40:  # a few evaluations in: the worker is killed
                first.stop.set()
                return None
            return original(run_id, progress)

        first.work_on = work_then_die
        first.drain()
    row = store.get_optimization(opt_id)
    assert row.status == "running" and row.owner is None  # released when the worker went
    calls_before = len(target.calls)
    drive(store, ids)
    row = store.get_optimization(opt_id)
    assert row.status == "completed", row.error
    from services.optimize import runs_of

    stored = sum(store.count_results(r) for r in runs_of(row))
    # every stored cell was asked of the target exactly once, across both workers
    assert len(target.calls) == stored and calls_before < stored


def test_a_cancelled_optimization_stops_its_evaluation_and_saves_nothing():
    store, base, opt_id, target, ids = submit_sentiment()
    from services.optimize import cancel, runs_of

    with Worker(store, providers=ids) as worker:
        original = worker.work_on

        def cancel_during_the_search(run_id, progress=None):
            if (
                store.get_optimization(opt_id).phase == "search"
                and len(store.get_optimization(opt_id).state["trials"]) == 2
            ):
                cancel(store, opt_id)
            return original(run_id, progress)

        worker.work_on = cancel_during_the_search
        worker.drain()
    row = store.get_optimization(opt_id)
    assert row.status == "cancelled" and row.report is None
    assert all(store.get_run(r).status in ("completed", "cancelled") for r in runs_of(row))
    assert any(store.get_run(r).status == "cancelled" for r in runs_of(row))
    assert [v.id for v in store.list_versions() if v.name == base.name] == [base.id]


def noise_reply(messages: list[dict], params: dict) -> str:
    """A target whose right answers are a coin flip per (prompt, case): no candidate is really better."""
    digest = hashlib.sha256(repr(messages).encode()).digest()
    label = label_of(messages[-1]["content"])
    return label if digest[0] % 2 else "unsure"


def test_null_control_finds_no_held_out_gain_in_noise():
    """The winner of a search over noise looks better on validation (the winner's curse) but its held-out
    interval covers no change: in at least 9 of 10 seeds, as the protocol promises."""
    covered = 0
    gaps = []
    for seed in range(10):
        store = open_store()
        name = f"noise-{seed}"
        base = setup(store, sentiment_cases(45), name)
        target = FakeProvider(noise_reply, label="fake:target")
        proposer = FakeProvider(
            lambda m, p: [f"Instruction: Rewrite {i} of the task, take care." for i in range(int(p["n"]))],
            label="fake:proposer",
        )
        request = Request(name, base.id, TARGET, PROPOSER, Budget(cells=200), seed=seed)
        opt_id = submit_optimization(store, request)
        drive(store, {save_provider(store, TARGET).id: target, save_provider(store, PROPOSER).id: proposer})
        report = store.get_optimization(opt_id).report
        if not report["chosen"] or report["heldout"]["delta_ci"][0] <= 0 <= report["heldout"]["delta_ci"][1]:
            covered += 1
        if report["chosen"]:
            gaps.append(report["gap"])
    assert covered >= 9
    assert gaps and sum(gaps) / len(gaps) > 0  # selection on validation overstates: the gap is positive


@pytest.mark.parametrize(
    ("cases", "budget", "message"),
    [
        (sentiment_cases(12), Budget(), "has 12 cases; optimizing needs at least 15"),
        (sentiment_cases(45), Budget(cells=0), "--budget-cells must be above 0"),
        (sentiment_cases(45), Budget(cells=20), "below the 75 this suite needs"),
    ],
)
def test_bad_requests_are_refused_and_nothing_is_written(cases, budget, message):
    store = open_store()
    base = setup(store, cases)
    before = len(store.list_versions(include_variants=True))
    with pytest.raises(OptimizeError, match=re.escape(message)):
        submit_optimization(store, Request("sentiment", base.id, TARGET, PROPOSER, budget))
    assert store.list_optimizations() == [] and store.list_providers() == []
    assert len(store.list_versions(include_variants=True)) == before


def test_a_proposer_that_returns_garbage_fails_the_optimization_with_the_fix():
    store = open_store()
    base = setup(store, sentiment_cases())
    target = FakeProvider(target_reply, label="fake:target")
    proposer = FakeProvider("", label="fake:proposer")
    opt_id = submit_optimization(store, Request("sentiment", base.id, TARGET, PROPOSER, Budget(cells=300)))
    drive(store, {save_provider(store, TARGET).id: target, save_provider(store, PROPOSER).id: proposer})
    row = store.get_optimization(opt_id)
    assert row.status == "failed" and "returned no usable instruction" in row.error
    assert "--proposer" in row.error
    assert [v for v in store.list_versions() if v.name == base.name] == [store.get_version(base.id)]
