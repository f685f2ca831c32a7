"""Techniques run as their templates declare, with the real default model (one engine for the module, fixed
seeds): self-consistency votes over five samples and the verbalizer scores label words with no strategy in the
suite; an explicit strategy wins; the calibrated verbalizer on a balanced suite; every example suite runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import techniques as techniques_bench
from services import open_store, runs, suites, worker
from services.engines import engines
from tests.conftest import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = techniques_bench.EXAMPLES  # every example suite, in the README table's order
POSITIVE = [
    "I love this phone, it is wonderful!",
    "Fantastic service, I am very happy.",
    "Best meal I ever had.",
    "Great quality and fast delivery.",
    "I am delighted with my purchase.",
    "What a lovely day at the beach.",
    "The staff were kind and helpful.",
    "Excellent book, I enjoyed every page.",
    "This works perfectly.",
    "Amazing concert, we had a great time.",
]
NEGATIVE = [
    "This is the worst service I have ever had.",
    "Terrible food and rude staff.",
    "It broke after one day.",
    "I hate waiting this long.",
    "Awful quality, a waste of money.",
    "The room was dirty and noisy.",
    "Very disappointing and boring film.",
    "The app crashes all the time.",
    "Horrible experience, never again.",
    "The package arrived damaged and late.",
]


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory):
    """One engine for the module, started by the engine owner (and stopped after); tests point at it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_HOME", str(tmp_path_factory.mktemp("engine-home")))
        mp.setenv("WORKBENCH_ENGINE_URL", f"http://127.0.0.1:{free_port()}/v1")  # nothing there: start one
        started = engines.ensure("smollm2-135m-instruct", "int4")
        yield started.url
        engines.stop_all()


def run_suite(tmp_path: Path, text: str, engine_url: str, monkeypatch) -> str:
    monkeypatch.setenv("WORKBENCH_ENGINE_URL", engine_url)
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    store = open_store()
    imported = suites.import_file(store, path)
    suite = suites.load_file(path)
    plan = runs.RunPlan(
        imported.suite_id,
        imported.version_ids,
        imported.provider_ids,
        strategy=suite.strategy,
        params=suite.params,
    )
    run = runs.create(store, plan)
    worker.execute(store, run.id, concurrency=4)
    return run.id


def test_declared_strategies_run_without_being_asked_and_an_override_wins(tmp_path, engine_url, monkeypatch):
    store = open_store()
    declared = run_suite(
        tmp_path,
        """\
prompts: [self_consistency, verbalizer]
providers: [local:smollm2-135m-instruct@int4]
tests:
  - vars: {question: "What is 2 plus 3?", text: "I love it, wonderful!"}
workbench:
  params: {max_tokens: 48, seed: 11}
""",
        engine_url,
        monkeypatch,
    )
    by_version = {store.get_version(r.version_id).name: r for r, _ in store.run_results(declared)}
    sc, vb = by_version["self_consistency"], by_version["verbalizer"]
    assert (
        sc.error is None and len(sc.detail["samples"]) == 5 and sc.detail["n"] == 5 and "votes" in sc.detail
    )
    assert vb.error is None and vb.output in ("positive", "negative", "neutral") and vb.tokens_out == 0
    assert set(vb.detail["probabilities"]) == {"positive", "negative", "neutral"} and "prior" in vb.detail
    recorded = store.get_run(declared).options["strategies"]
    assert recorded == {
        "self_consistency@v1": {"name": "self_consistency", "n": 5, "temperature": 0.7},
        "verbalizer@v1": {"name": "verbalizer"},
    }
    overridden = run_suite(
        tmp_path,
        """\
prompts: [verbalizer]
providers: [local:smollm2-135m-instruct@int4]
tests:
  - vars: {text: "I love it, wonderful!"}
workbench:
  strategy: single
  params: {max_tokens: 12, temperature: 0}
""",
        engine_url,
        monkeypatch,
    )
    [(cell, _)] = store.run_results(overridden)
    assert cell.tokens_out > 0 and "probabilities" not in cell.detail  # generated, not scored
    assert store.get_run(overridden).options["strategies"] == {"verbalizer@v1": {"name": "single"}}


def test_the_calibrated_verbalizer_on_a_balanced_suite(tmp_path, engine_url, monkeypatch):
    cases = "\n".join(
        f'  - {{vars: {{text: "{t}"}}, assert: [{{type: equals, value: {label}}}]}}'
        for texts, label in ((POSITIVE, "positive"), (NEGATIVE, "negative"))
        for t in texts
    )
    run_id = run_suite(
        tmp_path,
        f"""\
prompts: [verbalizer]
providers: [local:smollm2-135m-instruct@int4]
tests:
{cases}
workbench:
  strategy: {{name: verbalizer, labels: {{positive: [positive], negative: [negative]}}}}
""",
        engine_url,
        monkeypatch,
    )
    results = [r for r, _ in open_store().run_results(run_id)]
    truth = {t: "positive" for t in POSITIVE} | {t: "negative" for t in NEGATIVE}
    cases_by_id = {
        c.id: c.vars["text"] for c in open_store().suite_cases(open_store().get_run(run_id).suite_id)
    }
    calibrated = [r.output for r in results]
    raw = [max(r.detail["uncalibrated"], key=r.detail["uncalibrated"].get) for r in results]
    expected = [truth[cases_by_id[r.case_id]] for r in results]
    accuracy = sum(p == e for p, e in zip(calibrated, expected, strict=True)) / len(results)
    raw_accuracy = sum(p == e for p, e in zip(raw, expected, strict=True)) / len(results)
    shares = {label: calibrated.count(label) / len(results) for label in ("positive", "negative")}
    print(
        f"verbalizer on {len(results)} balanced cases: calibrated accuracy {accuracy:.0%} "
        f"(predicts positive {shares['positive']:.0%}, negative {shares['negative']:.0%}); "
        f"uncalibrated {raw_accuracy:.0%} (predicts positive {raw.count('positive') / len(raw):.0%}); "
        f"prior {results[0].detail['prior']}"
    )
    assert len(results) == 20 and all(r.error is None for r in results)
    assert min(shares.values()) >= 0.2 and accuracy >= raw_accuracy


def test_every_example_suite_runs_and_says_its_strategy(engine_url, isolated_home):
    env = {**os.environ, "WORKBENCH_ENGINE_URL": engine_url, "WORKBENCH_HOME": str(isolated_home)}
    exe = str(Path(sys.executable).parent / "workbench")
    # all at once: the engine batches their requests
    procs = {
        name: subprocess.Popen(
            [exe, "run", str(ROOT / "examples" / f"{name}.yaml"), "--threshold", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in EXAMPLES
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"{name}: {err[-2000:]}"
        assert "strategy for " in err and " errored" not in err.split("pass rate")[-1], (
            f"{name}: {err[-800:]}"
        )
    check_technique_defaults(open_store())


def check_technique_defaults(store) -> None:
    """The shipped self-consistency and tree-of-thoughts suites, as they are: every sample of the vote has an
    answer (the answer line is a grammar on our engine) and the tree grows past its root and says why it
    stopped, with the raw text of every call."""
    by_suite = {}
    for run in store.list_runs():
        by_suite[store.get_suite(run.suite_id).name] = [r for r, _ in store.run_results(run.id)]
    votes = by_suite["self_consistency"]
    assert votes and all(r.error is None and r.answer is not None for r in votes)
    for cell in votes:
        assert cell.detail["constrained"] and cell.detail["extraction_rate"] == 1.0, cell.detail
    [tree_cell] = by_suite["tree_of_thoughts"]
    tree = tree_cell.detail["tree"]
    assert tree_cell.error is None and tree_cell.answer is not None
    assert max(node["depth"] for node in tree) >= 1 and tree_cell.detail["stopped"]
    assert all("proposal_text" in n or "evaluation_text" in n or "answer_text" in n for n in tree), tree


def test_sampled_reruns_draw_new_answers_and_greedy_reruns_reuse_every_cell(
    tmp_path, engine_url, monkeypatch
):
    questions = [
        "Name a colour.",
        "Name an animal.",
        "Name a city.",
        "Name a fruit.",
        "Name a sport.",
        "Name a tool.",
    ]
    cases = "\n".join(f'  - vars: {{input: "{q}"}}' for q in questions)
    sampled = f"""\
prompts: ["Answer in a few words. {{{{ input }}}}"]
providers: [local:smollm2-135m-instruct@int4]
tests:
{cases}
workbench:
  params: {{max_tokens: 24, temperature: 0.7}}
"""
    store = open_store()

    def outputs(run_id: str) -> dict[str, tuple[str, bool]]:
        return {r.messages[-1]["content"]: (r.output, r.cached) for r, _ in store.run_results(run_id)}

    first, second = (outputs(run_suite(tmp_path, sampled, engine_url, monkeypatch)) for _ in range(2))
    assert len(first) == len(second) == 6 and not any(c for _, c in [*first.values(), *second.values()])
    differ = sum(first[k][0] != second[k][0] for k in first)
    assert differ >= 4, f"only {differ} of 6 sampled answers differ between two runs"
    greedy = sampled.replace("temperature: 0.7", "temperature: 0")
    fresh, reused = (outputs(run_suite(tmp_path, greedy, engine_url, monkeypatch)) for _ in range(2))
    assert not any(c for _, c in fresh.values()) and all(c for _, c in reused.values())
    assert {k: o for k, (o, _) in fresh.items()} == {k: o for k, (o, _) in reused.items()}
