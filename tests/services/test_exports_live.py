"""Exports run by the tools they target, for real: the request body POSTed with curl to `workbench serve`, two
promptfoo configs evaluated by the real promptfoo (npm promptfoo@0.123.1, installed by `make promptfoo`) against
our engine with the same verdicts as our own run, promptfoo's results imported as a run, and the HTML report
opened in Chromium with every network request blocked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from prompting.templates import load
from services import compare, exports, open_store, runs, worker
from services.engines import engines
from services.promptfoo_export import export_promptfoo
from services.promptfoo_results import import_results
from tests.browser import chromium, require_chromium
from tests.conftest import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PROMPTFOO_BIN = ROOT / ".tools" / "promptfoo" / "node_modules" / ".bin"
CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Germany", "Berlin")]


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_HOME", str(tmp_path_factory.mktemp("engine-home")))
        mp.setenv("WORKBENCH_ENGINE_URL", f"http://127.0.0.1:{free_port()}/v1")
        started = engines.ensure("smollm2-135m-instruct", "int4")
        yield started.url
        engines.stop_all()


@pytest.fixture
def live(engine_url, monkeypatch):
    monkeypatch.setenv("WORKBENCH_ENGINE_URL", engine_url)
    return engine_url


def promptfoo(config: Path, out: Path, tmp_path: Path) -> dict:
    if not (PROMPTFOO_BIN / "promptfoo").exists():
        pytest.skip(
            "promptfoo is not installed: `make promptfoo` installs it (npm promptfoo@0.123.1, node 22)"
        )
    env = {
        **os.environ,
        "PROMPTFOO_DISABLE_TELEMETRY": "1",
        "PROMPTFOO_DISABLE_UPDATE": "1",
        "PROMPTFOO_CONFIG_DIR": str(tmp_path / "promptfoo-home"),
        "PROMPTFOO_CACHE_ENABLED": "false",
    }
    done = subprocess.run(
        [
            str(PROMPTFOO_BIN / "node"),
            str(PROMPTFOO_BIN / "promptfoo"),
            "eval",
            "-c",
            str(config),
            "--no-cache",
            "--no-progress-bar",
            "-o",
            str(out),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


def capitals(store, params: dict) -> tuple:
    version = store.save_version(
        "zero_shot", load("zero_shot").source, variables={"instruction": "Answer with the capital city only."}
    )
    store.save_suite(
        "capitals",
        [
            {
                "description": country,
                "vars": {"input": f"Capital of {country}?"},
                "assertions": [{"type": "icontains", "value": city}],
            }
            for country, city in CAPITALS
        ],
        config={"params": params},
    )
    return version, store.get_suite("capitals")


def test_the_request_body_is_answered_by_the_engine(live):
    store = open_store()
    version = store.save_version("zero_shot", load("zero_shot").source, variables={"instruction": "Say hi."})
    body = exports.request_body(store, version.label, {"input": "Hello"}, params={"max_tokens": 8})
    done = subprocess.run(
        [*["sh", "-c"], exports.curl(body) + " -o /dev/null -w '%{http_code}'"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip() == "200", done.stderr


def test_promptfoo_evaluates_a_library_template_with_no_suite(live, tmp_path):
    text, warnings = export_promptfoo(open_store(), "zero_shot")
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(text)
    data = yaml.safe_load(text)
    assert data["providers"][0]["id"] == "openai:chat:smollm2-135m-instruct@int4" and data["tests"][0]["vars"]
    stats = promptfoo(config, tmp_path / "out.json", tmp_path)["results"]["stats"]
    assert stats["errors"] == 0 and stats["successes"] + stats["failures"] == 1 and warnings == []


def test_promptfoo_and_we_agree_on_a_stored_version_and_its_suite(live, tmp_path):
    store = open_store()
    params = {"temperature": 0, "max_tokens": 12}
    version, suite = capitals(store, params)
    config_id = store.upsert_provider(
        "local:smollm2-135m-instruct@int4", "local", "smollm2-135m-instruct", quant="int4"
    ).id
    ours = runs.create(store, runs.RunPlan(suite.id, [version.id], [config_id], params=params))
    worker.execute(store, ours.id)
    # a run of the suite on int8 (never executed): the engine serves int4 only, so int8 is left out by name
    int8 = store.upsert_provider(
        "local:smollm2-135m-instruct@int8", "local", "smollm2-135m-instruct", quant="int8"
    )
    runs.create(store, runs.RunPlan(suite.id, [version.id], [int8.id], params=params))
    text, warnings = export_promptfoo(store, version.label, "capitals")
    [left_out] = warnings
    assert left_out.startswith("left out local:smollm2-135m-instruct@int8: the engine at ")
    assert "`workbench serve --model smollm2-135m-instruct --quant int8 --port PORT`" in left_out
    assert [p["id"] for p in yaml.safe_load(text)["providers"]] == ["openai:chat:smollm2-135m-instruct@int4"]
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(text)
    output = promptfoo(config, tmp_path / "results.json", tmp_path)
    stats = output["results"]["stats"]
    total = runs.overall(store, ours.id)
    print(
        f"promptfoo: {stats['successes']} passed, {stats['failures']} failed, {stats['errors']} errors; "
        f"ours: {total.passed} passed, {total.failed} failed"
    )
    assert stats["errors"] == 0 and (stats["successes"], stats["failures"]) == (total.passed, total.failed)
    theirs = import_results(store, tmp_path / "results.json")
    comparison = compare.compare(
        store,
        compare.GroupRef(ours.id, version.id, config_id),
        compare.GroupRef(theirs, *store.get_run(theirs).version_ids, *store.get_run(theirs).provider_ids),
    )
    assert (
        comparison.paired.cases == len(CAPITALS) and comparison.paired.delta == 0
    )  # same cases, same verdicts


def test_the_html_report_opens_with_the_network_blocked(tmp_path, fake_api):
    require_chromium()
    from click.testing import CliRunner

    from cli import main

    suite = tmp_path / "s.yaml"
    suite.write_text(f"""prompts: ["Say {{{{ w }}}}"]
providers: [{{id: "openai:chat:fake-model", config: {{apiBaseUrl: "{fake_api.url}/v1", apiKeyEnvar: FAKE_KEY}}}}]
tests:
  - {{vars: {{w: a}}, assert: [{{type: contains, value: a}}]}}
  - {{vars: {{w: b}}, assert: [{{type: contains, value: zzz}}]}}
""")
    report = tmp_path / "report.html"
    assert CliRunner().invoke(main, ["run", str(suite), "--output", str(report)]).exit_code == 1
    requests: list[str] = []
    with chromium() as browser:
        page = browser.new_page()
        page.route(
            "**/*",
            lambda route: (
                (requests.append(route.request.url), route.abort())
                if not route.request.url.startswith("file://")
                else route.continue_()
            ),
        )
        page.goto(report.as_uri())
        assert page.locator("svg.chart rect").count() == 1  # the chart is drawn from the file alone
        assert page.locator("tr[data-cell]").count() == 2
        page.get_by_role("button", name="failed").click()
        assert page.locator("tr[data-cell]:visible").count() == 1
    assert requests == []
    # the SVG namespace is a name, not a fetch
    head = report.read_text().split("<body>")[0].replace("http://www.w3.org", "")
    assert "http" not in head  # no stylesheet or script from elsewhere


def test_promptfoo_is_json_passes_on_every_case_with_response_format(live, tmp_path):
    """A JSON-extraction suite through our server: with response_format, promptfoo's is-json with the schema
    passes on every case."""
    from bench.structured import SCHEMAS, TEXTS

    schema = SCHEMAS["person"]
    tests = [
        {"vars": {"text": text}, "assert": [{"type": "is-json", "value": schema}]}
        for text in TEXTS["person"][:6]
    ]
    config = {
        "prompts": ['[{"role": "user", "content": "Extract the person as JSON: {{ text }}"}]'],
        "providers": [
            {
                "id": "openai:chat:smollm2-135m-instruct@int4",
                "config": {
                    "apiBaseUrl": live,
                    "apiKeyRequired": False,
                    "temperature": 0,
                    "max_tokens": 80,
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": "person", "schema": schema, "strict": True},
                    },
                },
            }
        ],
        "tests": tests,
    }
    path = tmp_path / "promptfooconfig.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    stats = promptfoo(path, tmp_path / "out.json", tmp_path)["results"]["stats"]
    assert (stats["successes"], stats["failures"], stats["errors"]) == (len(tests), 0, 0)


def test_a_suite_with_tools_gets_valid_calls_from_the_engine(live, tmp_path):
    from click.testing import CliRunner

    from cli import main

    suite = tmp_path / "tools.yaml"
    suite.write_text("""\
prompts:
  - raw: "What is the weather in {{ city }}?"
    config:
      tools: [{type: function, function: {name: weather, parameters: {type: object,
               properties: {city: {type: string, maxLength: 30}}, required: [city],
               additionalProperties: false}}}]
      tool_choice: required
providers: [local:smollm2-135m-instruct@int4]
tests:
  - {vars: {city: Oslo}, assert: [{type: is-valid-openai-tools-call}, {type: tool-call-f1, value: weather}]}
  - {vars: {city: Lima}, assert: [{type: is-valid-openai-tools-call}]}
  - {vars: {city: Cairo}, assert: [{type: is-valid-openai-tools-call}]}
workbench:
  params: {temperature: 0, max_tokens: 48}
""")
    result = CliRunner().invoke(main, ["run", str(suite), "--run-id", "tools"])
    assert result.exit_code == 0, result.stderr[-2000:]
    cells = [r for r, _ in open_store().run_results("tools")]
    assert all(r.detail["constrained"] == "tools (required)" and r.detail["tool_calls"] for r in cells)
