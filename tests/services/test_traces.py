"""Production traces into suites: the generated 10,000-line chat log (malformed lines, near-duplicates, personal
data), the OpenTelemetry and Langfuse example exports, the round trip back to JSONL, and the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from examples.traces.generate import generate
from prompting.conversation import TURNS_VAR
from prompting.traces import TraceError
from services import open_store, traces

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "traces"


@pytest.fixture(scope="module")
def big_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("logs") / "production.jsonl"
    return path, generate(path, 10_000, seed=0)


def case_texts(store, suite: str) -> str:
    return json.dumps([c.vars for c in store.suite_cases(store.get_suite(suite).id)])


def test_ten_thousand_lines_import_in_seconds_with_malformed_lines_named_and_no_planted_pii_left(big_log):
    path, made = big_log
    store = open_store()
    with pytest.raises(TraceError) as refused:
        traces.import_traces(store, path, traces.ImportOptions("chat"))
    assert f"{made['malformed']} malformed record(s); nothing imported" in str(refused.value)
    assert "production.jsonl, line " in str(refused.value)
    assert store.list_suites() == [] and store.list_versions() == []  # nothing was written
    start = time.perf_counter()
    report = traces.import_traces(
        store, path, traces.ImportOptions("chat", skip_bad=True, sample=300, name="prod")
    )
    elapsed = time.perf_counter() - start
    print(f"imported 10,000 lines in {elapsed:.1f} s: {report}")
    assert len(report.bad) == made["malformed"] and report.read == 10_000 - made["malformed"]
    assert report.duplicates > 1000 and report.kept == 300
    assert report.scrubbed["email"] > 0 and report.scrubbed["phone"] > 0
    planted = json.loads(path.with_suffix(".planted.json").read_text())
    text = case_texts(store, "prod")
    assert not [value for value in planted if value in text]
    assert "<EMAIL>" in text and "<PHONE>" in text
    stored = store.suite_cases(store.get_suite("prod").id)
    models = {t for c in stored for t in c.tags if t.startswith("model:")}
    assert models == {"model:gpt-4o-mini", "model:gpt-4.1-nano"}
    assert {t for c in stored for t in c.tags if t in ("support", "billing")} == {"support", "billing"}
    assert sorted(report.versions) == ["prod-prompt1@v1", "prod-prompt2@v1"]
    assert {p.label for p in store.list_providers()} >= {"openai:gpt-4o-mini", "openai:gpt-4.1-nano"}
    assert all(
        c.assertions == [{"type": "similar", "value": "{{ _reference }}", "threshold": 0.8}] for c in stored
    )


def test_near_duplicates_are_caught_by_normalising_and_by_minhash():
    def trace(text):
        return traces.Trace([{"role": "user", "content": text}])

    base = "my kettle from order KC-10442 arrived with a cracked lid and the box was soaked can I get a refund please"
    found = traces.near_duplicates(
        [
            trace(base),
            trace(base.upper() + "!!"),  # identical once normalised
            trace(base + " thanks"),  # one word more: Jaccard of word trigrams ~0.95
            trace("do you ship teapots to Ireland and how long does it take to get there usually"),
        ]
    )
    assert found == [1, 2]


def test_the_sample_keeps_each_model_and_tag_in_proportion():
    logged = [
        traces.Trace([{"role": "user", "content": str(i)}], model="a" if i < 75 else "b") for i in range(100)
    ]
    sample = traces.stratified_sample(logged, 20, seed=3)
    assert len(sample) == 20 and sum(t.model == "a" for t in sample) == 15
    assert traces.stratified_sample(logged, 20, seed=3) == sample  # seeded


def test_round_trip_an_imported_log_exports_the_same_messages(tmp_path):
    source = tmp_path / "calls.jsonl"
    records = []
    for i in range(12):
        messages = [{"role": "system", "content": "You are support. {% raw %}{{ kept as text }}{% endraw %}"}]
        if i % 3 == 0:
            messages += [
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Hi! How can I help?"},
            ]
        messages.append({"role": "user", "content": f"Question number {i} about order KC-{10000 + i}?"})
        records.append(
            {
                "request": {"model": "gpt-4o-mini", "messages": messages},
                "response": {
                    "model": "gpt-4o-mini",
                    "choices": [{"message": {"role": "assistant", "content": f"A{i}"}}],
                },
            }
        )
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    store = open_store()
    options = traces.ImportOptions("chat", name="calls", dedupe=False, scrub=False)
    traces.import_traces(store, source, options)
    exported = traces.export_records(store, "calls")
    assert [r["request"]["messages"] for r in exported] == [r["request"]["messages"] for r in records]
    assert [r["response"]["choices"][0]["message"]["content"] for r in exported] == [
        f"A{i}" for i in range(12)
    ]
    again = tmp_path / "again.jsonl"
    again.write_text("".join(json.dumps(r) + "\n" for r in exported))
    traces.import_traces(store, again, traces.ImportOptions("chat", name="again", dedupe=False, scrub=False))
    assert [r["request"] for r in traces.export_records(store, "again")] == [r["request"] for r in exported]


def test_opentelemetry_genai_spans_import_with_tool_turns_and_the_older_indexed_attributes():
    store = open_store()
    report = traces.import_traces(
        store, EXAMPLES / "otel_spans.json", traces.ImportOptions("otel", name="otel")
    )
    assert (
        report.read == 2 and report.kept == 2 and report.scrubbed["phone"] == 1
    )  # the tool span is not a call
    first, second = store.suite_cases(store.get_suite("otel").id)
    assert [m["role"] for m in first.vars[TURNS_VAR]] == ["user", "assistant", "tool"]
    assert first.vars[TURNS_VAR][1]["tool_calls"][0]["function"]["name"] == "track_order"
    assert first.vars[TURNS_VAR][2] == {
        "role": "tool",
        "content": "in transit, arrives Friday",
        "tool_call_id": "call_1",
    }
    assert first.vars["_reference"] == "Your kettle is on its way and arrives on Friday."
    assert second.vars[TURNS_VAR] == [
        {"role": "user", "content": "Can I return a teapot? Call me on <PHONE>."}
    ]
    assert "model:gpt-4.1-nano" in second.tags and report.versions == ["otel-prompt1@v1"]


def test_a_langfuse_export_imports_its_generations_with_the_traces_tags():
    store = open_store()
    report = traces.import_traces(
        store, EXAMPLES / "langfuse_export.json", traces.ImportOptions("langfuse", name="lf")
    )
    assert report.kept == 2 and report.scrubbed["email"] == 1
    first, second = store.suite_cases(store.get_suite("lf").id)
    assert [m["role"] for m in first.vars[TURNS_VAR]] == ["user", "assistant", "user"]
    assert "support" in first.tags and "<EMAIL>" in first.vars[TURNS_VAR][-1]["content"]
    assert second.vars == {
        TURNS_VAR: [{"role": "user", "content": "Do you ship to Ireland?"}],
        "_reference": "Yes, we ship to Ireland in 3 to 5 days.",
    }


def test_the_cli_imports_and_exports_and_names_what_it_skipped(tmp_path):
    source = tmp_path / "log.jsonl"
    good = {"request": {"messages": [{"role": "user", "content": "Hi, mail me at x.y@example.com"}]}}
    source.write_text(
        json.dumps(good)
        + "\n{broken\n"
        + json.dumps({"request": {"messages": [{"role": "assistant", "content": "x"}]}})
        + "\n"
    )
    runner = CliRunner()
    refused = runner.invoke(main, ["import", str(source), "--traces", "chat"])
    assert refused.exit_code == 2 and "log.jsonl, line 2: invalid JSON" in refused.output
    done = runner.invoke(main, ["import", str(source), "--traces", "chat", "--skip-bad", "--name", "cli"])
    assert done.exit_code == 0, done.output
    assert "skipped: log.jsonl, line 2: invalid JSON" in done.output
    assert "does not end with a user turn to answer" in done.output
    assert "imported suite cli" in done.output and "scrubbed 1 email" in done.output
    out = tmp_path / "out.jsonl"
    exported = runner.invoke(main, ["export-traces", "cli", "-o", str(out)])
    assert exported.exit_code == 0
    assert json.loads(out.read_text()) == {
        "request": {"messages": [{"role": "user", "content": "Hi, mail me at <EMAIL>"}]}
    }


def test_a_bad_entry_of_a_json_array_is_named_by_its_record_number(tmp_path):
    export = tmp_path / "langfuse.json"
    good = {"type": "GENERATION", "input": [{"role": "user", "content": "Hi"}], "output": "Hello"}
    export.write_text(
        json.dumps([good, {"type": "GENERATION", "input": [{"role": "robot", "content": "x"}]}])
    )
    with pytest.raises(TraceError, match=r"langfuse.json, record 2: a message needs a role"):
        traces.import_traces(open_store(), export, traces.ImportOptions("langfuse"))
