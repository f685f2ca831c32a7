"""The runner's matrix, cache, resume and error handling, with plain lists as the sink."""

from __future__ import annotations

import threading

from prompting.runner import (
    CaseSpec,
    Cell,
    ProviderHandle,
    Runner,
    VersionSpec,
    ablation_variants,
)
from prompting.strategies import Prompt
from prompting.templates import Template, load
from tests.fakes import FakeProvider


class DictCache:
    def __init__(self):
        self.data = {}
        self.scopes = {}

    def get(self, key):
        return self.data.get(key)

    def put(self, key, response, scope):
        self.data[key] = response
        self.scopes[key] = scope


def echo_reply(messages, params):
    return messages[-1]["content"].upper()


def setup(cases=3, repeats=2, provider=None, **kwargs):
    template = Template.from_source("Say {{ word }}", name="say")
    versions = [
        VersionSpec(1, Prompt(template), "say@v1"),
        VersionSpec(2, Prompt(template, {"word": "x"}), "v2"),
    ]
    provider = provider or FakeProvider(echo_reply)
    case_specs = [
        CaseSpec(id=10 + i, vars={"word": f"w{i}"}, assertions=[{"type": "icontains", "value": f"w{i}"}])
        for i in range(cases)
    ]
    return Runner(versions, [ProviderHandle(7, provider)], case_specs, repeats=repeats, **kwargs), provider


def test_full_matrix_runs_each_cell_once_with_progress():
    runner, fake = setup(concurrency=3)
    results, updates = [], []
    final = runner.run(set(), results.append, updates.append)
    cells = {r.cell for r in results}
    assert len(results) == len(cells) == 2 * 1 * 3 * 2
    assert final.done == final.total == 12 and final.passed == 12 and final.errors == 0
    assert [u.done for u in updates] == list(range(13))
    assert all(r.passed and r.score == 1.0 and r.output == f"SAY W{r.cell.case_id - 10}" for r in results)
    assert len(fake.calls) == 12


def test_resume_skips_finished_cells():
    runner, fake = setup()
    done = {Cell(10, 1, 7, 0), Cell(11, 2, 7, 1)}
    results = []
    runner.run(done, results.append)
    assert len(results) == 10 and not done & {r.cell for r in results}


def run_all(runner, run_id):
    runner.run_id = run_id
    results = []
    runner.run(set(), results.append)
    return results


def test_deterministic_answers_are_shared_across_runs_and_repeats_stay_independent():
    cache = DictCache()
    # Both versions send the same messages (the case's word wins), so only the repeat index tells calls apart.
    runner, fake = setup(cases=1, repeats=2, cache=cache, concurrency=1, params={"temperature": 0})
    first = run_all(runner, "one")
    assert len(fake.calls) == 2 and len(cache.data) == 2  # repeat index is part of the key
    assert set(cache.scopes.values()) == {"shared"}
    assert sorted(r.cached for r in first) == [False, False, True, True]
    second = run_all(runner, "two")
    assert len(fake.calls) == 2 and all(r.cached for r in second)
    runner.cache_policy = "fresh"
    third = run_all(runner, "three")
    assert len(fake.calls) == 4 and sorted(r.cached for r in third) == [False, False, True, True]
    assert sorted(cache.scopes.values()).count("run:three") == 2


def test_sampled_answers_are_reused_only_inside_their_own_run():
    cache = DictCache()
    runner, fake = setup(cases=1, repeats=2, cache=cache, concurrency=1, params={"temperature": 0.7})
    first = run_all(runner, "one")
    assert len(fake.calls) == 2 and set(cache.scopes.values()) == {"run:one"}
    assert sorted(r.cached for r in first) == [False, False, True, True]  # the two versions send the same
    second = run_all(runner, "two")
    assert len(fake.calls) == 4 and sorted(r.cached for r in second) == [False, False, True, True]
    resumed = run_all(runner, "one")  # the same run again (a resume): its own answers, nothing paid twice
    assert len(fake.calls) == 4 and all(r.cached for r in resumed)
    runner.run_id, runner.params = "", {"temperature": 0.7}
    unscoped = run_all(runner, "")  # no run to scope a sampled answer to: nothing is cached
    assert len(fake.calls) == 8 and not any(r.cached for r in unscoped)


def test_a_seed_makes_a_sampled_request_deterministic():
    cache = DictCache()
    runner, fake = setup(
        cases=1, repeats=1, cache=cache, concurrency=1, params={"temperature": 0.7, "seed": 3}
    )
    run_all(runner, "one")
    run_all(runner, "two")
    assert len(fake.calls) == 1 and set(cache.scopes.values()) == {"shared"}


def test_an_unknown_cache_policy_is_an_error_naming_the_choices():
    runner, _ = setup(cases=1, repeats=1, cache=DictCache(), cache_policy="sometimes")
    results = run_all(runner, "x")
    assert all("unknown cache policy 'sometimes'; choose one of: reuse, fresh" in r.error for r in results)


def test_errors_are_recorded_apart_from_failures():
    fake = FakeProvider(echo_reply, fail=lambda messages: "w1" in messages[-1]["content"])
    runner, _ = setup(provider=fake, repeats=1)
    results = []
    state = runner.run(set(), results.append)
    errored = [r for r in results if r.error]
    assert len(errored) == 2 and all("connection reset" in r.error for r in errored)
    assert all(r.passed is None and r.assertions == [] for r in errored)
    assert state.errors == 2 and state.passed == 4


def test_render_errors_become_cell_errors():
    template = Template.from_source("{{ missing }}", name="broken")
    runner = Runner([VersionSpec(1, Prompt(template))], [ProviderHandle(1, FakeProvider())], [CaseSpec(1)])
    results = []
    runner.run(set(), results.append)
    assert results[0].error == "template 'broken' is missing variables: missing"


def test_stop_interrupts_with_the_finished_cells_delivered():
    stop = threading.Event()
    runner, _ = setup(cases=3, repeats=2, concurrency=1, stop=stop)
    results = []

    def sink(result):
        results.append(result)
        if len(results) == 5:
            stop.set()

    try:
        runner.run(set(), sink)
        raise AssertionError("expected Interrupted")
    except Exception as exc:
        assert type(exc).__name__ == "Interrupted"
    assert len(results) == 5


def test_ablation_drops_each_section_guardrails_and_example():
    from prompting.guardrails import Guardrails

    few = load("few_shot")
    prompt = Prompt(
        few,
        {"examples": [{"input": "a", "output": "b"}, {"input": "c", "output": "d"}]},
        guardrails=Guardrails(task="t"),
    )
    labels = [label for label, _ in ablation_variants(prompt)]
    assert labels == ["full", "-Examples", "-Input", "-guardrails", "-example 1", "-example 2"]
    dropped = dict(ablation_variants(prompt))["-example 1"]
    assert dropped.variables["examples"] == [{"input": "c", "output": "d"}]
