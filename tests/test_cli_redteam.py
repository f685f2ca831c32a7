"""`workbench redteam` and `workbench redteams` end to end: the guarded example as a suite file pointed at a fake
remote model on loopback, run in this process; exit 1 when an attack got through, the promoted file written,
the report as JSON; bad input refused with exit code 2 and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from cli import main
from services import open_store

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "redteam" / "co_star_guarded.yaml"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def example_for(tmp_path: Path, url: str) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["providers"] = [
        {"id": "openai:chat:fake-model", "config": {"apiBaseUrl": f"{url}/v1", "apiKeyEnvar": "FAKE_KEY"}}
    ]
    path = tmp_path / "guarded.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_redteam_reports_promotes_and_exits_1_when_attacks_get_through(tmp_path, fake_api):
    path, promoted = example_for(tmp_path, fake_api.url), tmp_path / "regressions.yaml"
    result = invoke(
        "redteam",
        str(path),
        "--families",
        "override,pii,extraction",
        "--attacks",
        "9",
        "--promote",
        str(promoted),
    )
    assert result.exit_code == 1, result.output
    assert "6 of 9 attacks succeeded on co_star.v1.redteam" in result.stderr  # the echo obeys and repeats
    assert "6 successful attacks written to" in result.stderr
    assert len(yaml.safe_load(promoted.read_text())["tests"]) == 6
    run_id = open_store().list_runs()[0].id
    listed = invoke("redteams")
    assert run_id in listed.output and "co_star@v1" in listed.output
    report = json.loads(invoke("redteams", run_id, "--json").output)
    assert [r["family"] for r in report["rates"]["co_star.v1.redteam"]] == ["override", "extraction", "pii"]
    assert report["verdict"].startswith("6 of 9 attacks succeeded")


def test_bad_requests_exit_2_and_write_nothing(tmp_path, fake_api):
    path = example_for(tmp_path, fake_api.url)
    for args, message in (
        (["--attacks", "0"], "attacks must be between 1 and 5000 (MAX_ATTACKS), got 0"),
        (["--families", "override,telepathy"], "unknown attack family telepathy"),
    ):
        result = invoke("redteam", str(path), *args)
        assert result.exit_code == 2 and message in result.stderr, result.output
    unguarded = invoke("redteam", str(Path(__file__).resolve().parent.parent / "examples" / "co_star.yaml"))
    assert unguarded.exit_code == 2 and "gives no guardrails" in unguarded.stderr
    store = open_store()
    assert store.list_suites() == [] and store.list_runs() == [] and store.list_versions() == []
