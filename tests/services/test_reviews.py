"""Human review: ratings follow the output they judged, promotion teaches the suite, κ against scikit-learn,
version labels with their history and NAME@LABEL everywhere a version is named, the review page's persistence,
and malformed input refused without writing anything."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sklearn.metrics import cohen_kappa_score
from streamlit.testing.v1 import AppTest

from cli import main
from prompting.stats import cohen_kappa
from services import open_store, reviews

ROOT = Path(__file__).resolve().parents[2]
SUITE = """\
prompts: ["Say {{{{ word }}}}"]
providers:
  - id: openai:chat:fake-model
    config: {{apiBaseUrl: "{url}/v1", apiKeyEnvar: FAKE_KEY}}
tests:
{tests}
"""


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def suite(tmp_path: Path, url: str, words: list[str]) -> Path:
    tests = "\n".join(f"  - {{vars: {{word: {w}}}, assert: [{{type: contains, value: {w}}}]}}" for w in words)
    path = tmp_path / "s.yaml"
    path.write_text(SUITE.format(url=url, tests=tests))
    return path


def result_ids(run_id: str) -> list[int]:
    return [r.id for r, _ in open_store().run_results(run_id)]


def test_a_rating_follows_the_same_output_and_not_a_changed_one(tmp_path, fake_api):
    path = suite(tmp_path, fake_api.url, ["alpha", "beta"])
    assert invoke("run", str(path), "--run-id", "one").exit_code == 0
    first = result_ids("one")[0]
    assert invoke("rate", str(first), "fail", "--score", "2", "--comment", "too terse").exit_code == 0
    assert (
        invoke("run", str(path), "--run-id", "two", "--no-cache").exit_code == 0
    )  # same outputs, fresh calls
    store = open_store()
    rated = [i for i in reviews.items(store, "two") if i.rated]
    assert len(rated) == 1 and rated[0].ratings[0].comment == "too terse" and rated[0].ratings[0].score == 2
    fake_api.script.transform = lambda text: text + "!"
    assert invoke("run", str(path), "--run-id", "three", "--no-cache").exit_code == 0
    assert not any(i.rated for i in reviews.items(store, "three"))
    assert reviews.progress(store, "two") == (1, 2)


def test_promote_creates_a_suite_whose_new_assertion_passes_on_the_output(tmp_path, fake_api):
    path = suite(tmp_path, fake_api.url, ["alpha"])
    assert invoke("run", str(path), "--run-id", "one").exit_code == 0
    [cell] = result_ids("one")
    assert invoke("promote", str(cell)).exit_code == 2  # not rated yet
    assert invoke("rate", str(cell), "pass").exit_code == 0
    result = invoke("promote", str(cell))
    assert result.exit_code == 0, result.output
    name = result.output.split()[-1]
    store = open_store()
    [case] = store.suite_cases(store.get_suite(name).id)
    assert case.assertions[-1] == {"type": "equals", "value": "echo: Say alpha"}
    run = store.get_run("one")
    store.create_run(
        suite_id=store.get_suite(name).id,
        version_ids=run.version_ids,
        provider_ids=run.provider_ids,
        run_id="promoted",
    )
    assert invoke("run", str(path), "--run-id", "promoted").exit_code == 0  # the promoted assertion passes


def test_kappa_equals_scikit_learn():
    judge = [
        True,
        True,
        False,
        True,
        False,
        False,
        True,
        True,
        False,
        True,
        True,
        False,
        True,
        False,
        True,
        True,
    ]
    human = [
        True,
        False,
        False,
        True,
        False,
        True,
        True,
        True,
        False,
        True,
        False,
        False,
        True,
        True,
        True,
        True,
    ]
    assert abs(cohen_kappa(judge, human) - cohen_kappa_score(judge, human)) < 1e-12


def test_labels_move_keep_history_and_name_versions_everywhere(tmp_path, fake_api):
    store = open_store()
    first = store.save_version("greet", "Say {{ word }}")
    second = store.save_version("greet", "Please say {{ word }}")
    assert invoke("label", "set", first.label, "production").exit_code == 0
    moved = invoke("label", "set", second.label, "production")
    assert moved.exit_code == 0 and "(was greet@v1)" in moved.output
    assert store.get_version("greet@production").id == second.id
    history = invoke("label", "history", "greet").output.strip().splitlines()
    assert len(history) == 2 and history[0].endswith("greet@production: (new) -> greet@v1")
    assert history[1].endswith("greet@production: greet@v1 -> greet@v2")
    rendered = invoke("render", "greet@production", "--var", "word=hi")
    assert json.loads(rendered.output) == [{"role": "user", "content": "Please say hi"}]
    exported = invoke("export", "greet@production", "--format", "j2")
    assert exported.exit_code == 0 and "Please say {{ word }}" in exported.output
    path = tmp_path / "labelled.yaml"
    path.write_text(
        suite(tmp_path, fake_api.url, ["alpha"])
        .read_text()
        .replace('["Say {{ word }}"]', "[greet@production]")
    )
    assert invoke("run", str(path), "--run-id", "labelled").exit_code == 0
    assert fake_api.script.requests[-1]["messages"][-1]["content"] == "Please say alpha"
    assert store.get_run("labelled").version_ids == [second.id]


def test_malformed_review_input_is_refused_and_writes_nothing(tmp_path):
    store = open_store()
    store.save_version("greet", "Say {{ word }}")
    unknown = invoke("render", "greet@nope", "--var", "word=x")
    assert unknown.exit_code == 2 and "no label 'nope' on 'greet'" in unknown.stderr
    missing = invoke("rate", "999", "pass")
    assert missing.exit_code == 2 and "no result with id 999" in missing.stderr
    assert invoke("label", "set", "nothing@v1", "production").exit_code == 2
    assert store.labels() == [] and store.ratings(["x"]) == {}


def test_the_review_page_keeps_progress_and_ratings(tmp_path, fake_api):
    path = suite(tmp_path, fake_api.url, ["alpha", "beta", "gamma", "delta"])
    assert invoke("run", str(path), "--run-id", "one").exit_code == 0
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/review.py").run()
    assert not at.exception, at.exception
    for verdict in ("good", "bad", "good"):
        at.button(key=f"do_review_{verdict}").click().run()
        assert not at.exception, at.exception
    at.switch_page("pages/runs.py").run()
    [grid] = [d.value for d in at.dataframe if "review" in d.value.columns]
    assert sorted(grid["review"]) == ["", "bad", "good", "good"]  # the Runs page shows the ratings too
    at.switch_page("pages/review.py").run()
    assert any("3 of 4 reviewed" in p.proto.text for p in at.get("progress")) or "3 of 4 reviewed" in str(
        at.main
    )
    store = open_store()
    rated = [i for i in reviews.items(store, "one") if i.rated]
    assert sorted(i.ratings[0].passed for i in rated) == [False, True, True]


JUDGED_SUITE = """\
prompts: ["Say {{{{ word }}}}"]
providers:
  - id: openai:chat:fake-model
    config: {{apiBaseUrl: "{url}/v1", apiKeyEnvar: FAKE_KEY}}
tests:
{tests}
workbench:
  judge: {{id: "openai:chat:fake-model", config: {{apiBaseUrl: "{url}/v1", apiKeyEnvar: FAKE_KEY}}}}
"""


def grade(text: str) -> str:
    """The stand-in judge: passes an answer whose number is not a multiple of 3; echoes anything else."""
    if "grading an answer" not in text:
        return text
    number = int(text.split("Say w", 1)[1].split()[0].strip('".'))
    return json.dumps({"pass": number % 3 != 0, "reason": "stand-in"})


def test_judge_agreement_shows_kappa_in_runs_show_and_on_compare(tmp_path, fake_api):
    fake_api.script.transform = grade
    tests = "\n".join(
        f"  - {{vars: {{word: w{n}}}, assert: [{{type: llm-rubric, value: says it}}]}}" for n in range(16)
    )
    path = tmp_path / "judged.yaml"
    path.write_text(JUDGED_SUITE.format(url=fake_api.url, tests=tests))
    first = invoke("run", str(path), "--run-id", "one")
    assert first.exit_code == 1 and "judge did not answer" not in first.output  # the judge fails 6 of 16
    store = open_store()
    judge, human = [], []
    for item in reviews.items(store, "one"):
        number = int(item.result.output.split("Say w")[1])
        reviews.rate(store, item.result.id, number % 4 != 0)
        judge.append(number % 3 != 0)
        human.append(number % 4 != 0)
    expected = cohen_kappa_score(judge, human)
    shown = invoke("runs", "show", "one")
    assert f"Cohen's κ {expected:.2f}" in shown.output, shown.output
    second = invoke("run", str(path), "--run-id", "two")  # cached: the same outputs keep their ratings
    assert second.exit_code == 1
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    text = " ".join(m.value for m in at.markdown)
    assert f"Cohen's κ {expected:.2f} (" in text and "over 16 rated cells" in text, text


def test_kappa_is_undefined_when_a_rater_gives_one_verdict_throughout():
    from services.reviews import MIN_RATED_FOR_AGREEMENT, Agreement, why_undefined

    n = MIN_RATED_FOR_AGREEMENT
    human = [i % 3 != 0 for i in range(n)]
    assert why_undefined([False] * n, human) == "undefined: the judge failed every cell"
    assert why_undefined(human, [True] * n) == "undefined: the reviewers passed every cell"
    assert why_undefined(human[:4], human[:4]) == f"needs at least {n} rated cells"
    assert why_undefined(human, human) is None
    # cohen_kappa alone would report 0.00 for the constant judge: agreement no better than chance, which it is not
    assert cohen_kappa([False] * n, human) == 0.0
    shown = Agreement("llm-rubric", n, {}, None, None, why_undefined([False] * n, human)).text
    assert shown == f"Cohen's κ undefined: the judge failed every cell ({n} rated cells)"
