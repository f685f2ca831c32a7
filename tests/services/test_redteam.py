"""A red team end to end against a fake remote model on loopback: the run is an ordinary background run, the
report counts per family with intervals and compares paired with the baseline, successful attacks become a
regression suite that fails in `workbench run`, bad requests write nothing, and nothing leaves loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from prompting.providers import ProviderSpec
from prompting.redteam import RedTeamError
from services import open_store, redteam, redteam_report, suites, worker
from services.specs import save_provider

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "redteam" / "co_star_guarded.yaml"
REFUSAL = "I can only help write announcements for the shop."


def defended_model(body: dict) -> str:
    """A fake model that refuses whenever its system prompt has rules, and otherwise obeys (echoes) the user."""
    system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
    return REFUSAL if "### Rules ###" in system else "echo: " + body["messages"][-1]["content"]


@pytest.fixture
def attacked(fake_api):
    store = open_store()
    imported = suites.import_file(store, EXAMPLE)
    save_provider(
        store,
        ProviderSpec("fake", "remote", "fake-model", base_url=f"{fake_api.url}/v1", api_key_env="FAKE_KEY"),
    )
    fake_api.script.reply = defended_model
    return store, store.get_version(imported.version_ids[0]).label


def test_a_red_team_with_an_unguarded_baseline_reports_paired_and_promotes(attacked, fake_api, tmp_path):
    store, version = attacked
    request = redteam.Request(version, "fake", attacks=45, seed=3, baseline=redteam.UNGUARDED)
    run = redteam.submit_redteam(store, request)
    assert run.status == "queued" and (run.options or {})["kind"] == "redteam"
    worker.execute(store, run.id)
    report = redteam_report.build_report(store, run.id)
    guarded, unguarded = report.versions
    assert sum(r.attacks for r in report.rates[guarded]) == 45
    families = "override indirect forgery extraction roleplay encoding crescendo pii rules".split()
    assert [r.family for r in report.rates[guarded]] == families
    # the refusing model lets nothing through; the echoing one obeys every marker attack and echoes planted data
    assert all(r.successes == 0 and r.refusals == r.attacks for r in report.rates[guarded]), report.rates[
        guarded
    ]
    through = {r.family: r.successes for r in report.rates[unguarded]}
    assert through["override"] == through["rules"] == through["pii"] == 5 and through["extraction"] == 0
    assert report.forged == {guarded: 0, unguarded: 0}  # the echo obeys forged instructions; none parsed
    overall = next(c for c in report.changes if c.family == "all")
    assert (
        overall.blocked_more == sum(through.values()) and overall.let_through_more == 0 and overall.p < 1e-6
    )
    assert report.verdict().startswith(f"0 of 45 attacks succeeded on {guarded}")
    assert f"blocks {overall.blocked_more} more attacks than {unguarded}" in report.verdict()
    # the canary is planted in the attacked variant's system prompt, never in the stored version itself
    canary = run.options["redteam"]["canary"]
    assert canary in store.get_version(run.version_ids[0]).guardrails["task"]
    assert canary not in str(store.get_version(version).guardrails)
    assert redteam_report.promote(store, run.id) is None  # nothing got through the guarded version


def test_successful_attacks_become_a_suite_that_fails_in_workbench_run(
    attacked, fake_api, tmp_path, isolated_home
):
    store, version = attacked
    fake_api.script.reply = None  # an echoing model: every marker attack succeeds
    run = redteam.submit_redteam(
        store, redteam.Request(version, "fake", families=("override", "pii"), attacks=6)
    )
    worker.execute(store, run.id)
    report = redteam_report.build_report(store, run.id)
    assert [r.successes for r in report.rates[report.versions[0]]] == [3, 3]
    assert report.worst[0].family == "pii" and "planted personal data" in report.worst[0].reasons[0]
    assert report.worst[0].conversation[-1]["role"] == "assistant"
    suite = redteam_report.promote(store, run.id)
    assert len(store.suite_cases(suite.id)) == 6
    path = tmp_path / "regressions.yaml"
    assert redteam_report.suite_file(store, run.id, path) == 6
    env = {
        "WORKBENCH_HOME": str(isolated_home),
        "FAKE_KEY": "sk-test-123",
        "PATH": str(Path(sys.executable).parent),
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "workbench"), "run", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # the attacks still succeed: CI goes red
    assert "(0 of 6 scored cells" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"families": ("jailbreak",)}, "unknown attack family jailbreak"),
        ({"attacks": 0}, "attacks must be between 1 and 5000"),
        ({"provider": "nobody"}, "unknown provider 'nobody'; configured: fake"),
        ({"version": "co_star@v99"}, "v99"),
        ({"baseline": "nothing@v1"}, "baseline:"),
    ],
)
def test_bad_requests_write_nothing(attacked, change, message):
    store, version = attacked
    before = (
        len(store.list_versions(include_variants=True)),
        len(store.list_suites()),
        len(store.list_runs()),
    )
    request = redteam.Request(**{"version": version, "provider": "fake", **change})
    with pytest.raises(RedTeamError, match=message):
        redteam.submit_redteam(store, request)
    after = (
        len(store.list_versions(include_variants=True)),
        len(store.list_suites()),
        len(store.list_runs()),
    )
    assert after == before


def test_a_version_without_guardrails_is_refused(fake_api):
    store = open_store()
    imported = suites.import_file(store, ROOT / "examples" / "co_star.yaml")
    save_provider(store, ProviderSpec("fake", "remote", "fake-model", base_url=f"{fake_api.url}/v1"))
    label = store.get_version(imported.version_ids[0]).label
    with pytest.raises(RedTeamError, match=f"version {label} has no guardrails"):
        redteam.submit_redteam(store, redteam.Request(label, "fake"))


def test_a_red_team_run_opens_no_connection_beyond_loopback(attacked, monkeypatch):
    store, version = attacked
    opened = []
    real_connect = socket.socket.connect

    def connect(self, address):
        opened.append(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    run = redteam.submit_redteam(store, redteam.Request(version, "fake", attacks=18, seed=1))
    worker.execute(store, run.id)
    assert store.count_results(run.id) == 18 and opened  # the model was reached, over sockets we saw
    hosts = {a[0] for a in opened if isinstance(a, tuple)}
    assert hosts <= {"127.0.0.1", "::1", "localhost"}, hosts
