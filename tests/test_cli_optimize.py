"""`workbench optimize` and `workbench optimizations` end to end: a suite file against a fake remote API on
loopback, the job done by a `workbench worker` process, the report printed; bad input refused with exit code 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from cli import main
from services import open_store
from tests.conftest import wait_until
from tests.services.test_optimize import sentiment_cases

TEMPLATE = """{#---
name: draft
variables: [{name: input}]
bound: {values: {instruction: "Classify the review."}}
---#}
{% message "user" %}
{{ instruction }}
{% section "Input" %}
{{ input }}
{% endsection %}
{% endmessage %}
"""


def suite_file(tmp_path: Path, url: str, cases: int, instruction_in_cases: bool = False) -> Path:
    (tmp_path / "draft.j2").write_text(TEMPLATE)
    body = {
        "description": "sentiment",
        "prompts": ["zero_shot"] if instruction_in_cases else ["file://draft.j2"],
        "providers": [
            {"id": "openai:chat:fake-model", "config": {"apiBaseUrl": f"{url}/v1", "apiKeyEnvar": "FAKE_KEY"}}
        ],
        "defaultTest": {"vars": {"instruction": "Classify the review."} if instruction_in_cases else {}},
        "tests": [
            {"vars": c["vars"], "assert": c["assertions"], "tags": c["tags"]} for c in sentiment_cases(cases)
        ],
    }
    path = tmp_path / "sentiment.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_optimize_a_suite_file_in_a_worker_and_show_the_report(tmp_path, fake_api, isolated_home):
    path = suite_file(tmp_path, fake_api.url, 45)
    runner = CliRunner()
    result = runner.invoke(main, ["optimize", str(path), "--budget-cells", "200", "--detach"])
    assert result.exit_code == 0, result.output
    optimization_id = result.stdout.strip().splitlines()[-1]
    listed = runner.invoke(main, ["optimizations"])
    assert optimization_id in listed.output and "queued" in listed.output
    exe = str(Path(sys.executable).parent / "workbench")
    env = {**os.environ, "WORKBENCH_HOME": str(isolated_home)}
    proc = subprocess.Popen(
        [exe, "worker", "--poll", "0.1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        store = open_store()
        assert wait_until(lambda: store.get_optimization(optimization_id).status == "completed", timeout=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    shown = runner.invoke(main, ["optimizations", optimization_id])
    assert shown.exit_code == 0, shown.output
    # the fake echoes the prompt back: nothing passes, so no candidate can beat the starting version
    assert "no candidate beat the baseline" in shown.output
    assert "held-out (evaluated once, at the end)" in shown.output and "15 cases" in shown.output
    assert "spent:" in shown.output
    as_json = json.loads(runner.invoke(main, ["optimizations", optimization_id, "--json"]).stdout)
    assert as_json["status"] == "completed" and as_json["report"]["heldout"]["cases"] == 15


def test_optimize_refuses_bad_input_with_the_fix(tmp_path, fake_api):
    runner = CliRunner()
    small = suite_file(tmp_path, fake_api.url, 9)
    result = runner.invoke(main, ["optimize", str(small), "--parts", "demos", "--detach"])
    assert result.exit_code == 2 and "has 9 cases; optimizing needs at least 15" in result.output
    assert open_store().list_suites() == []  # refused before the file was imported
    path = suite_file(tmp_path, fake_api.url, 45)
    result = runner.invoke(main, ["optimize", str(path), "--budget-cells", "0", "--detach"])
    assert result.exit_code == 2 and "--budget-cells must be above 0" in result.output
    in_cases = suite_file(tmp_path, fake_api.url, 45, instruction_in_cases=True)
    result = runner.invoke(main, ["optimize", str(in_cases), "--detach"])  # the instruction is each case's
    assert result.exit_code == 2 and "no instruction to rewrite" in result.output
    result = runner.invoke(
        main, ["optimize", str(path), "--provider", "nonsense", "--parts", "demos", "--detach"]
    )
    assert result.exit_code == 2 and "nonsense" in result.output
    result = runner.invoke(main, ["optimize", str(path), "--parts", "instruction,colour", "--detach"])
    assert result.exit_code == 2 and "unknown search part(s) colour" in result.output
    assert open_store().list_optimizations() == []
