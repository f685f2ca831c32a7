"""`workbench run` end to end against a fake remote API on loopback: exit codes, outputs, runs, resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from services import open_store
from tests.conftest import wait_until

SUITE = """\
description: echo suite
prompts: ["Say {{{{ word }}}}"]
providers:
  - id: openai:chat:fake-model
    config: {{apiBaseUrl: "{url}/v1", apiKeyEnvar: FAKE_KEY{extra}}}
tests:
{tests}
evaluateOptions: {{maxConcurrency: {concurrency}}}
"""


def suite_file(
    tmp_path: Path,
    url: str,
    words: list[str],
    failing: int = 0,
    concurrency: int = 2,
    temperature: float | None = None,
) -> Path:
    tests = []
    for i, word in enumerate(words):
        expected = "nope" if i < failing else word
        tests.append(
            f"  - description: case {i}\n    vars: {{word: {word}}}\n"
            f"    assert: [{{type: contains, value: {expected}}}]"
        )
    path = tmp_path / "echo.yaml"
    extra = "" if temperature is None else f", temperature: {temperature}"
    path.write_text(SUITE.format(url=url, tests="\n".join(tests), concurrency=concurrency, extra=extra))
    return path


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_run_green_red_and_outputs(tmp_path, fake_api):
    path = suite_file(tmp_path, fake_api.url, ["alpha", "beta", "gamma", "delta"])
    out_json = tmp_path / "r.json"
    result = invoke("run", str(path), "--output", str(out_json))
    assert result.exit_code == 0, result.output
    assert "pass rate 100%" in result.stderr
    payload = json.loads(out_json.read_text())
    assert sorted(r["output"] for r in payload["results"]) == [
        "echo: Say alpha",
        "echo: Say beta",
        "echo: Say delta",
        "echo: Say gamma",
    ]
    assert all(k == "Bearer sk-test-123" for k in fake_api.script.keys)
    [run] = open_store().list_runs()
    assert run.status == "completed" and open_store().count_results(run.id) == 4
    stored = open_store().list_providers()[0]
    assert stored.api_key_env == "FAKE_KEY" and "sk-test" not in json.dumps(stored.params)

    red = suite_file(tmp_path, fake_api.url, ["a1", "b1", "c1", "d1"], failing=1)
    out_csv = tmp_path / "r.csv"
    result = invoke("run", str(red), "--output", str(out_csv))
    assert result.exit_code == 1 and "pass rate 75%" in result.stderr
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 4 and sorted(r["pass"] for r in rows) == ["False", "True", "True", "True"]
    assert invoke("run", str(red), "--threshold", "0.75").exit_code == 0
    html = tmp_path / "r.html"
    assert invoke("run", str(red), "--output", str(html)).exit_code == 1
    assert "<table>" in html.read_text() and "class='fail'" in html.read_text()


def test_runs_list_show_and_compare(tmp_path, fake_api):
    path = suite_file(tmp_path, fake_api.url, ["one", "two"])
    assert invoke("run", str(path), "--run-id", "first").exit_code == 0
    fake_api.script.transform = lambda text: text.replace("two", "2")
    assert invoke("run", str(path), "--run-id", "second", "--no-cache").exit_code == 1
    listing = invoke("runs", "list")
    assert listing.exit_code == 0
    lines = listing.output.strip().splitlines()
    assert lines[0].startswith("second  completed") and lines[1].startswith("first   completed")
    assert "pass  50%" in lines[0] and "pass 100%" in lines[1]
    shown = invoke("runs", "show", "second", "--json")
    data = json.loads(shown.output)
    assert data["id"] == "second" and len(data["results"]) == 2
    assert {r["pass"] for r in data["results"]} == {True, False}
    assert all(
        {"case_id", "version", "provider", "repeat", "output", "pass", "score", "error"} <= set(r)
        for r in data["results"]
    )
    text = invoke("runs", "show", "second").output
    assert "[FAIL] case" in text and "[PASS] case" in text
    compare = invoke("runs", "compare", "first", "second")
    assert compare.exit_code == 0, compare.output
    [regressed] = [line for line in compare.output.splitlines() if line.strip().startswith("regressed")]
    assert "case 1" in regressed and "100% -> 0% (−100 points)" in regressed
    assert "pass rate 100% -> 50% (−50 points); improved 0, regressed 1, unchanged 1" in compare.output
    assert "verdict: B is worse by 50 points; with 2 cases this cannot be told from noise" in compare.output
    other = suite_file(tmp_path, fake_api.url, ["three"])
    assert invoke("run", str(other), "--run-id", "third").exit_code == 0
    unrelated = invoke("runs", "compare", "first", "third")
    assert unrelated.exit_code == 2 and "share no case" in unrelated.stderr


def test_runs_of_one_suite_on_different_providers_compare_as_on_the_compare_page(tmp_path, fake_api):
    """An int8 run and an int4 run (here: two models) of one suite pair on the case; the CLI's JSON has the
    page's numbers, from the one comparison."""
    from services import compare as compare_service

    words = ["a1", "b2", "c3", "d4"]
    path = suite_file(tmp_path, fake_api.url, words, temperature=0)
    assert invoke("run", str(path), "--run-id", "model-a").exit_code == 0
    path.write_text(path.read_text().replace("openai:chat:fake-model", "openai:chat:fake-model-b"))
    fake_api.script.transform = lambda text: text.replace("c3", "c")
    assert invoke("run", str(path), "--run-id", "model-b").exit_code == 1
    shown = invoke("runs", "compare", "model-a", "model-b", "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["matched_on"] == "case" and data["cases"] == 4 and data["regressed"] == 1
    assert data["delta"] == -0.25 and sum(r["delta"] for r in data["rows"]) / 4 == data["delta"]
    store = open_store()
    [group_a] = [g for g in compare_service.groups(store) if g.ref.run_id == "model-a"]
    [group_b] = [g for g in compare_service.groups(store) if g.ref.run_id == "model-b"]
    page = compare_service.compare(store, group_a.ref, group_b.ref)
    cli_numbers = {k: v for k, v in data.items() if k not in ("a", "b", "rows", "warnings")}
    page_numbers = compare_service.comparison_dict(page)
    assert cli_numbers == {k: page_numbers[k] for k in cli_numbers}
    assert [(r["case"], r["change"]) for r in data["rows"]] == [(r.case, r.change) for r in page.rows]


def test_repeat_strategy_and_cache_policy(tmp_path, fake_api):
    sampled = suite_file(tmp_path, fake_api.url, ["x"])  # no temperature: the endpoint's default 1.0 samples
    assert invoke("run", str(sampled), "--repeat", "3").exit_code == 0
    assert len(fake_api.script.requests) == 3
    rerun = invoke("run", str(sampled), "--repeat", "3")
    assert rerun.exit_code == 0 and "answered from the cache" not in rerun.stderr
    assert len(fake_api.script.requests) == 6  # sampled answers are drawn again for every run
    path = suite_file(tmp_path, fake_api.url, ["x"], temperature=0)
    assert invoke("run", str(path), "--repeat", "3").exit_code == 0
    assert len(fake_api.script.requests) == 9
    again = invoke("run", str(path), "--repeat", "3")
    assert again.exit_code == 0 and len(fake_api.script.requests) == 9  # greedy: every cell reused
    assert "3 of 3 cells were answered from the cache" in again.stderr
    [latest, *_] = open_store().list_runs()
    assert latest.options["cache"] == "reuse"
    assert invoke("run", str(path), "--repeat", "3", "--cache", "fresh").exit_code == 0
    assert len(fake_api.script.requests) == 12
    assert open_store().list_runs()[0].options["cache"] == "fresh"
    result = invoke("run", str(path), "--strategy", "tree_of_thoughts")
    assert (
        result.exit_code == 1
        and "needs a template with propose and evaluate stages"
        in invoke("runs", "show", open_store().list_runs()[0].id).output
    )


def test_retries_on_429(tmp_path, fake_api):
    fake_api.script.fail_first = 2
    path = suite_file(tmp_path, fake_api.url, ["x"])
    assert invoke("run", str(path)).exit_code == 0
    assert len(fake_api.script.requests) == 3


def _workbench() -> str:
    return str(Path(sys.executable).parent / "workbench")


@pytest.mark.slow
def test_kill_and_resume_completes_only_missing_cells(tmp_path, fake_api, isolated_home):
    fake_api.script.delay_s = 0.15
    words = [f"w{i}" for i in range(24)]
    path = suite_file(tmp_path, fake_api.url, words, concurrency=2)
    env = {**os.environ, "WORKBENCH_HOME": str(isolated_home)}
    proc = subprocess.Popen(
        [_workbench(), "run", str(path), "--run-id", "killme"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert wait_until(lambda: _count("killme") >= 6)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _count("killme")
    assert 6 <= before < 24
    requests_before = len(fake_api.script.requests)
    # --no-cache: a cell killed between caching its response and storing its result would otherwise be
    # answered from the cache, and the request count below would depend on where the kill landed.
    done = subprocess.run(
        [_workbench(), "run", str(path), "--run-id", "killme", "--no-cache"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"resuming killme: {before} cells already stored" in done.stderr
    assert _count("killme") == 24
    cells = open_store().finished_cells("killme")
    assert len(cells) == 24  # unique per cell: nothing duplicated
    # in-flight cells at the kill were not stored, so they (and only the missing ones) were requested again
    assert len(fake_api.script.requests) - requests_before == 24 - before


def _count(run_id: str) -> int:
    try:
        return open_store().count_results(run_id)
    except Exception:
        return 0


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_prints_the_run_id(tmp_path, fake_api, isolated_home):
    fake_api.script.delay_s = 0.2
    path = suite_file(tmp_path, fake_api.url, [f"w{i}" for i in range(30)], concurrency=1)
    env = {**os.environ, "WORKBENCH_HOME": str(isolated_home)}
    proc = subprocess.Popen(
        [_workbench(), "run", str(path), "--run-id", "ctrlc"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert wait_until(lambda: _count("ctrlc") >= 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "--run-id ctrlc" in err
    assert open_store().get_run("ctrlc").status == "interrupted"


def test_bad_output_extension_is_refused_before_anything_runs(tmp_path, fake_api):
    path = suite_file(tmp_path, fake_api.url, ["x"])
    result = invoke("run", str(path), "--output", str(tmp_path / "r.txt"))
    assert result.exit_code == 2 and "use a .json, .csv or .html file name" in result.output
    assert open_store().list_runs() == [] and fake_api.script.requests == []


def test_ape_ranks_proposed_instructions_by_pass_rate(tmp_path, fake_api):
    # The fake echoes the last user message: proposals come back as "echo: I gave a friend...", and each
    # instruction's zero-shot run echoes a prompt that contains the case's input, so it passes `contains`.
    path = tmp_path / "ape.yaml"
    path.write_text(
        SUITE.format(
            url=fake_api.url,
            extra="",
            concurrency=2,
            tests="\n".join(
                f"  - vars: {{word: w{i}, input: w{i}}}\n    assert: [{{type: contains, value: w{i}}}]"
                for i in range(3)
            ),
        )
    )
    result = invoke("ape", str(path), "-m", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("1. 100%  echo: I gave a friend an instruction.")
    proposals = [r for r in fake_api.script.requests if r.get("n") == 2]
    assert len(proposals) == 1 and "Input: w0\nOutput: w0" in proposals[0]["messages"][0]["content"]


def test_baseline_gate_fails_only_on_a_significant_regression(tmp_path, fake_api):
    path = suite_file(tmp_path, fake_api.url, [f"w{i}" for i in range(20)])
    assert invoke("run", str(path), "--run-id", "base").exit_code == 0
    same = invoke("run", str(path), "--run-id", "again", "--no-cache", "--baseline", "base")
    assert same.exit_code == 0 and "cannot be told from noise" in same.stderr and "gate: pass" in same.stderr
    fake_api.script.transform = lambda text: "nothing" if int(text.rsplit("w", 1)[1]) < 15 else text
    worse = invoke("run", str(path), "--run-id", "worse", "--no-cache", "--baseline", "base")
    assert (
        worse.exit_code == 1
        and "B is worse by 75 points (95 % interval −" in worse.stderr
        and "gate: FAIL" in worse.stderr
    )
    tolerated = invoke("run", str(path), "--run-id", "worse2", "--baseline", "base", "--max-drop", "0.9")
    assert tolerated.exit_code == 0 and "gate: pass (tolerated drop 90 pts)" in tolerated.stderr
    missing = invoke("run", str(path), "--baseline", "nope")
    assert missing.exit_code == 2 and "no stored run 'nope'" in missing.output


def test_runs_show_and_compare_report_intervals_and_a_verdict(tmp_path, fake_api):
    path = suite_file(tmp_path, fake_api.url, [f"w{i}" for i in range(10)])
    assert invoke("run", str(path), "--run-id", "one", "--repeat", "2").exit_code == 0
    shown = invoke("runs", "show", "one")
    assert (
        "pass rate 100% (72% to 100%) over 10 cases, mean score 1.00 (1.00 to 1.00), pass@2 100%, pass^2 100%"
        in shown.output
    )
    data = json.loads(invoke("runs", "show", "one", "--json").output)
    assert data["groups"][0]["stats"]["pass_rate_ci"][0] == pytest.approx(0.7225, abs=1e-3)
    fake_api.script.transform = lambda text: "nothing" if text.endswith("w3") else text
    assert invoke("run", str(path), "--run-id", "two", "--repeat", "2", "--no-cache").exit_code == 1
    compared = json.loads(invoke("runs", "compare", "one", "two", "--json").output)
    assert (
        compared["cases"] == 10 and compared["delta"] == pytest.approx(-0.1) and not compared["significant"]
    )
    assert compared["test"] == "sign-flip permutation test over cases"
    assert compared["verdict"].startswith(
        "B is worse by 10 points; with 10 cases this cannot be told from noise"
    )
