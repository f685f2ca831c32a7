"""The iteration loop end to end: a suite stored, run against the real engine (started by the provider itself),
scored and kept; the verbalizer through real continuation scoring; the example suite green from the CLI."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli import main
from prompting.providers import ProviderSpec
from prompting.strategies import Prompt, verbalizer
from prompting.templates import load
from services import compare, open_store, runs, suites, sweeps, worker
from services.engines import engines
from services.providers import provider_for
from services.specs import save_provider
from tests.conftest import free_port

pytestmark = pytest.mark.slow

SUITE = """\
description: five cases
prompts:
  - "Answer with one word. What is the capital of {{ country }}?"
providers:
  - id: local:smollm2-135m-instruct
    config: {quant: int4}
tests:
  - {vars: {country: France}, assert: [{type: icontains, value: Paris}]}
  - {vars: {country: Japan}, assert: [{type: icontains, value: Tokyo}]}
  - {vars: {country: Italy}, assert: [{type: icontains, value: Rome}, {type: latency, threshold: 60000}]}
  - {vars: {country: Germany}, assert: [{type: icontains, value: Berlin}]}
  - {vars: {country: Spain}, assert: [{type: not-contains, value: "###"}]}
workbench:
  params: {temperature: 0, max_tokens: 12}
"""


@pytest.fixture(scope="module")
def local_engine_started():
    # Nothing answers at the configured URL, so the provider must start (and later stop) its own engine.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_ENGINE_URL", f"http://127.0.0.1:{free_port()}/v1")
        yield
    engines.stop_all()


def test_five_case_suite_against_the_real_engine(tmp_path, local_engine_started):
    path = tmp_path / "five.yaml"
    path.write_text(SUITE)
    store = open_store()
    imported = suites.import_file(store, path)
    run = runs.create(
        store,
        runs.RunPlan(
            imported.suite_id,
            imported.version_ids,
            imported.provider_ids,
            params={"temperature": 0, "max_tokens": 12},
        ),
    )
    updates = []
    state = worker.execute(store, run.id, concurrency=3, progress=updates.append)
    assert state.done == state.total == 5 and state.errors == 0
    assert [u.done for u in updates][-1] == 5
    stored = store.run_results(run.id)
    assert len(stored) == 5
    for result, scores in stored:
        assert result.error is None and result.output and result.tokens_out > 0 and result.latency_ms > 0
        assert result.cost == 0.0 and result.messages[0]["role"] == "user"
        assert scores and all(s.reason for s in scores)
    assert store.get_run(run.id).status == "completed"
    [started] = engines.running()
    assert started.alive() and started.url.startswith("http://127.0.0.1:") and started.startup_s > 0
    # the start-up is recorded on the run, not charged to its first cells
    assert store.get_run(run.id).options["engine_startup_s"] == started.startup_s
    assert max(r.latency_ms for r, _ in stored) < started.startup_s * 1000
    summary = runs.summary(store, run.id)
    assert summary[0].summary.cells == 5 and summary[0].provider == "local:smollm2-135m-instruct@int4"


def test_verbalizer_scores_label_words_on_the_real_engine(local_engine_started):
    """The label words are scored by the engine (no text generated); calibration divides the content-free prior
    out. One sentence is a near tie once calibrated on this small model (0.41 vs 0.46 between positive and neutral,
    decided by the last bits of the attention arithmetic), so the calibrated verdict is checked on a balanced suite
    in tests/services/test_techniques.py; here the raw scores and the calibration arithmetic."""
    provider = provider_for(ProviderSpec.parse("local:smollm2-135m-instruct", {"quant": "int4"}))
    case = {"text": "I love this phone, it is wonderful!"}
    raw = verbalizer(Prompt(load("verbalizer")), case, provider, {}, {"calibrate": False})
    assert raw.answer == "positive" and raw.detail["probabilities"]["positive"] > 0.7
    out = verbalizer(Prompt(load("verbalizer")), case, provider, {}, {})
    probabilities, prior, uncalibrated = (
        out.detail["probabilities"],
        out.detail["prior"],
        out.detail["uncalibrated"],
    )
    assert set(probabilities) == set(prior) == {"positive", "negative", "neutral"}
    assert abs(sum(probabilities.values()) - 1) < 1e-9 and abs(sum(prior.values()) - 1) < 1e-9
    ratio = {label: uncalibrated[label] / prior[label] for label in prior}
    assert all(abs(probabilities[k] - ratio[k] / sum(ratio.values())) < 1e-9 for k in ratio)
    assert out.answer == max(probabilities, key=probabilities.get)


def test_the_example_suite_runs_green(local_engine_started):
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "capitals.yaml"
    result = CliRunner().invoke(main, ["run", str(example)])
    assert result.exit_code == 0, result.output
    assert "pass rate 100%" in result.stderr


def test_quantization_sweep_reports_score_perplexity_memory_and_speed(tmp_path, local_engine_started):
    path = tmp_path / "five.yaml"
    path.write_text(SUITE)
    store = open_store()
    imported = suites.import_file(store, path)
    sweep = sweeps.sweep_submit(
        store,
        imported.suite_id,
        imported.version_ids[0],
        "smollm2-135m-instruct",
        ["int4"],
        params={"temperature": 0, "max_tokens": 12},
    )
    [run] = sweeps.sweep_runs(store, sweep)
    worker.execute(store, run.id)
    [row] = sweeps.sweep_result(store, sweep)
    assert row["method"] == "int4" and 0.0 <= row["score"] <= 1.0
    assert 10 < row["ppl"] < 30  # the shipped text under int4 (bench: ~17.1)
    assert 80 < row["weight_mb"] < 110 and 5 < row["bits_per_param"] < 6
    assert row["tokens_per_s"] > 0
    assert store.count_results(row["run_id"]) == 5
    [shown] = compare.sweep_rows(store, sweep)  # the Compare page's sweep table: every figure formatted once
    assert shown["method"] == "int4" and shown["status"] == "completed" and shown["pass rate"].endswith("%")
    assert " to " in shown["95 % interval"] and shown["perplexity"] == f"{row['ppl']:.2f}"


def test_section_ablation_runs_every_variant(tmp_path):
    from tests.fakes import FakeProvider

    store = open_store()
    version = store.save_version(
        "co_star", load("co_star").source, variables={v.name: v.example for v in load("co_star").variables}
    )
    suite = store.save_suite("ablate", [{"vars": {}, "assertions": [{"type": "contains", "value": "Tone"}]}])
    # the fake answers with the section titles it was shown, so dropping Tone fails the assertion
    fake = FakeProvider(
        lambda messages, params: " ".join(
            line.strip("# ") for line in messages[-1]["content"].splitlines() if line.startswith("###")
        )
    )
    run_id = sweeps.ablation_submit(store, suite.id, version.id, fake.spec)
    worker.execute(store, run_id, providers={save_provider(store, fake.spec).id: fake})
    effects = compare.ablation_effects(store, run_id)
    deltas = {v["variant"]: v["delta"] for v in effects}
    assert set(deltas) == {"-Context", "-Objective", "-Style", "-Tone", "-Audience", "-Response"}
    assert deltas["-Tone"] == -1.0 and all(d == 0.0 for k, d in deltas.items() if k != "-Tone")
    assert {v["variant"]: v["score"] for v in effects}["-Tone"] == 0.0
    assert len(fake.calls) == 7
