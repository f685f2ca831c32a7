"""One pass-rate definition everywhere: a run with an errored cell reports the same rate in the CLI table, its
verdict line and exit code, `runs show --json`, the Runs page and the Compare page."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from cli import main
from services import open_store

ROOT = Path(__file__).resolve().parents[2]
SUITE = """\
prompts: ["Say {{{{ word }}}}"]
providers:
  - id: openai:chat:fake-model
    config: {{apiBaseUrl: "{url}/v1", apiKeyEnvar: FAKE_KEY}}
tests:
  - {{vars: {{word: alpha}}, assert: [{{type: contains, value: alpha}}]}}
  - {{vars: {{word: beta}}, assert: [{{type: contains, value: beta}}]}}
  - {{vars: {{word: gamma}}, assert: [{{type: contains, value: nope}}]}}
  - {{vars: {{word: broken}}, assert: [{{type: contains, value: broken}}]}}
"""


def test_one_pass_rate_with_an_errored_cell(tmp_path, fake_api):
    fake_api.script.reject = lambda body: "broken" in body["messages"][-1]["content"]
    path = tmp_path / "mixed.yaml"
    path.write_text(SUITE.format(url=fake_api.url))
    result = CliRunner().invoke(main, ["run", str(path), "--run-id", "mixed", "--threshold", "0.5"])
    # 2 passed of 3 scored; the errored cell is counted apart and keeps the gate closed
    assert result.exit_code == 1, result.output
    assert "pass rate 67% (2 of 3 scored cells; 1 errored cells have no verdict" in result.stderr
    [table_row] = [line for line in result.stderr.splitlines() if "67%" in line and "│" in line]
    cells = [c.strip() for c in table_row.split("│")]
    assert cells[3:6] == ["4", "1", "67%"], table_row  # cells, errors, pass rate

    shown = json.loads(CliRunner().invoke(main, ["runs", "show", "mixed", "--json"]).output)
    assert shown["summary"]["pass_rate"] == 2 / 3 and shown["summary"]["errors"] == 1
    assert shown["groups"][0]["pass_rate"] == 2 / 3

    listing = CliRunner().invoke(main, ["runs", "list"]).output
    assert "pass  67%" in listing

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception, at.exception
    summary = at.dataframe[0].value
    assert list(summary["pass rate"]) == ["67%"] and list(summary["errors"]) == [1]

    store = open_store()
    run = store.get_run("mixed")
    store.create_run(
        suite_id=run.suite_id,
        version_ids=run.version_ids,
        provider_ids=run.provider_ids,
        run_id="mixed-again",
    )
    assert CliRunner().invoke(main, ["run", str(path), "--run-id", "mixed-again"]).exit_code == 1
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    metric = next(m for m in at.metric if m.label.startswith("Pass rate: A 67% → B"))
    assert metric.value == "67%"
