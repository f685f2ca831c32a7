"""`workbench run | runs | import | export` with a recording fake provider, and the malformed-file pack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cli import main
from prompting.suites import load_suite
from services import open_store
from settings import get_settings

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """\
description: good
prompts: ["Say {{ word }}"]
providers: ["local:smollm2-135m-instruct"]
tests:
  - vars: {word: hi}
    assert: [{type: contains, value: hi}]
"""

# (file name, content, fragment the message must hold: the place and the problem)
MALFORMED = [
    ("bad_yaml.yaml", "prompts: [a\ntests: []\n", "bad_yaml.yaml, line 2"),
    ("tab_indent.yaml", "prompts:\n\t- x\n", "tab_indent.yaml, line 2"),
    ("not_mapping.yaml", "- just\n- a list\n", "a suite must be a mapping"),
    ("no_prompts.yaml", "providers: []\ntests: []\n", "prompts is missing"),
    ("no_tests.yaml", "prompts: [zero_shot]\n", "tests is missing"),
    ("unknown_top.yaml", GOOD + "colour: red\n", "unknown keys: colour"),
    (
        "unknown_assert.yaml",
        GOOD.replace("type: contains", "type: javascript"),
        "unsupported assertion types: 'javascript' at line 6 (tests[0].assert[0].type)",
    ),
    (
        "two_unsupported.yaml",
        GOOD.replace(
            "assert: [{type: contains, value: hi}]",
            "assert: [{type: python, value: x}, {type: webhook, value: y}]",
        ),
        "'python' at line 6 (tests[0].assert[0].type); 'webhook' at line 6 (tests[0].assert[1].type)",
    ),
    (
        "missing_vars.yaml",
        GOOD.replace("vars: {word: hi}", "vars: {other: hi}"),
        "line 5 (tests[0].vars): test 1: missing vars for prompt 'prompt1': word",
    ),
    (
        "vars_list.yaml",
        GOOD.replace("vars: {word: hi}", "vars: [word, hi]"),
        "line 5 (tests[0].vars): vars must be a mapping",
    ),
    (
        "threshold_text.yaml",
        GOOD.replace("value: hi}", "value: hi, threshold: high}"),
        "line 6 (tests[0].assert[0].threshold): threshold must be a number",
    ),
    ("weight_negative.yaml", GOOD.replace("value: hi}", "value: hi, weight: -1}"), "weight must be >= 0"),
    (
        "assert_not_list.yaml",
        GOOD.replace("assert: [{type: contains, value: hi}]", "assert: {type: contains}"),
        "line 6 (tests[0].assert): assert must be a list",
    ),
    ("assert_no_value.yaml", GOOD.replace("value: hi}", "value: ''}"), "assertion 'contains' needs a value"),
    (
        "bad_regex.yaml",
        GOOD.replace("{type: contains, value: hi}", "{type: regex, value: '('}"),
        "invalid regex",
    ),
    (
        "unknown_test_key.yaml",
        GOOD.replace("  - vars:", "  - expect: 1\n    vars:"),
        "unknown test keys: expect",
    ),
    (
        "bad_provider.yaml",
        GOOD.replace("local:smollm2-135m-instruct", "anthropic:claude"),
        "line 3 (providers[0]): unknown provider id 'anthropic:claude'",
    ),
    (
        "bad_quant.yaml",
        GOOD.replace(
            'providers: ["local:smollm2-135m-instruct"]',
            "providers:\n  - id: local:smollm2-135m-instruct\n    config: {quant: int3}",
        ),
        "unknown quantization method 'int3'",
    ),
    (
        "secret_in_file.yaml",
        GOOD.replace(
            'providers: ["local:smollm2-135m-instruct"]',
            "providers:\n  - id: openai:chat:gpt-4o-mini\n    config: {apiKey: sk-x}",
        ),
        "never in the suite",
    ),
    (
        "missing_prompt_file.yaml",
        GOOD.replace('prompts: ["Say {{ word }}"]', "prompts: [file://nope.j2]"),
        "prompt file",
    ),
    (
        "prompt_syntax.yaml",
        GOOD.replace('prompts: ["Say {{ word }}"]', 'prompts: ["Say {{ word }"]'),
        "line 2 (prompts[0]): syntax error",
    ),
    ("bad_strategy.yaml", GOOD + "workbench: {strategy: magic}\n", "strategy must be one of"),
    ("bad_delimiter.yaml", GOOD + "workbench: {delimiter: pipes}\n", "delimiter must be one of"),
    (
        "bad_concurrency.yaml",
        GOOD + "evaluateOptions: {maxConcurrency: zero}\n",
        "maxConcurrency must be a positive integer",
    ),
    (
        "bad_csv_ref.yaml",
        GOOD.replace(
            "tests:\n  - vars: {word: hi}\n    assert: [{type: contains, value: hi}]\n",
            "tests: file://cases.csv\n",
        ),
        "cases.csv, line 3: expected 2 columns, found 3",
    ),
    (
        "bad_jsonl_ref.yaml",
        GOOD.replace(
            "tests:\n  - vars: {word: hi}\n    assert: [{type: contains, value: hi}]\n",
            "tests: file://cases.jsonl\n",
        ),
        "cases.jsonl, line 2: invalid JSON",
    ),
    (
        "cases_unknown.csv",
        "word,__expected\nhi,javascript:1 == 1\n",
        "cases_unknown.csv: unsupported assertion types: 'javascript' at line 2 (column __expected)",
    ),
    ("cases_quote.csv", 'word,__expected\n"hi,contains:hi\n', "cases_quote.csv"),
]


@pytest.fixture
def pack(tmp_path):
    (tmp_path / "cases.csv").write_text("word,__expected\nhi,contains:hi\nyo,contains:yo,extra\n")
    (tmp_path / "cases.jsonl").write_text('{"vars": {"word": "hi"}}\n{"vars": {"word": \n')
    return tmp_path


def test_the_pack_has_at_least_twenty_broken_suites():
    assert len(MALFORMED) >= 20


@pytest.mark.parametrize("name,content,fragment", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_suites_exit_2_name_the_place_and_write_nothing(pack, name, content, fragment):
    path = write(pack, name, content)
    before = (open_store().list_suites(), open_store().list_runs(), open_store().list_versions())
    for command in (["import", str(path)], ["run", str(path)]):
        result = invoke(*command)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: ") and fragment in result.stderr, result.stderr
    assert (open_store().list_suites(), open_store().list_runs(), open_store().list_versions()) == before


def test_example_suites_are_valid():
    suite = load_suite(EXAMPLES / "capitals.yaml")
    assert [p.label for p in suite.prompts] == ["zero_shot", "prompt2"]
    assert len(suite.cases) == 3 and suite.max_concurrency == 4
    assert suite.cases[0].vars["instruction"] == "Answer with the city name only."
    csv_suite = load_suite(EXAMPLES / "capitals.csv")
    assert csv_suite.cases[1].assertions == [{"type": "icontains", "value": "Berlin"}]


def test_csv_conventions(tmp_path):
    path = write(
        tmp_path,
        "c.csv",
        "q,__expected1,__expected2,__description,__metadata:topic\n"
        "a,plain text,not-contains:bad,first,geo\nb,similar(0.8):hello,is-json,,\n",
    )
    suite = load_suite(path)
    assert suite.cases[0].assertions == [
        {"type": "equals", "value": "plain text"},
        {"type": "not-contains", "value": "bad"},
    ]
    assert suite.cases[0].description == "first" and suite.cases[0].vars == {"q": "a"}
    assert suite.cases[1].assertions == [
        {"type": "similar", "value": "hello", "threshold": 0.8},
        {"type": "is-json"},
    ]


def test_import_then_export_round_trip(tmp_path):
    source = EXAMPLES / "capitals.yaml"
    result = invoke("import", str(source), "--name", "caps")
    assert result.exit_code == 0, result.output
    assert "imported suite caps" in result.output and "3 tests, 2 prompts, 1 providers" in result.output
    # the suite is run once so its providers are known to the export
    suite_id = open_store().get_suite("caps").id
    versions = [v.id for v in open_store().list_versions()]
    open_store().create_run(
        suite_id=suite_id, version_ids=versions, provider_ids=[p.id for p in open_store().list_providers()]
    )
    out = tmp_path / "promptfooconfig.yaml"
    result = invoke("export", "zero_shot", "--format", "promptfoo", "--suite", "caps", "-o", str(out))
    assert result.exit_code == 0, result.output
    exported = yaml.safe_load(out.read_text())
    # promptfoo reaches our engine as an OpenAI-compatible API; the label brings it back to ours on import
    assert exported["providers"] == [
        {
            "id": "openai:chat:smollm2-135m-instruct@int4",
            "label": "local:smollm2-135m-instruct@int4",
            "config": {
                "apiBaseUrl": get_settings().engine_url,
                "apiKeyRequired": False,
                "temperature": 0,
                "max_tokens": 24,
            },
        }
    ]
    again = load_suite(out)
    original = load_suite(source)
    assert [c.to_dict() for c in again.cases] == [c.to_dict() for c in original.cases]
    assert again.providers == original.providers
    assert again.prompts[0].template.source == original.prompts[0].template.source


def test_export_never_holds_a_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-very-secret")
    suite = write(
        tmp_path,
        "remote.yaml",
        GOOD.replace(
            'providers: ["local:smollm2-135m-instruct"]',
            "providers:\n  - id: openai:chat:gpt-4o-mini\n    config: {apiKeyEnvar: MY_KEY, apiBaseUrl: 'http://127.0.0.1:9/v1'}",
        ),
    )
    assert invoke("import", str(suite), "--name", "remote").exit_code == 0
    suite_id = open_store().get_suite("remote").id
    open_store().create_run(
        suite_id=suite_id, version_ids=[], provider_ids=[p.id for p in open_store().list_providers()]
    )
    result = invoke("export", "prompt1", "--format", "promptfoo", "--suite", "remote")
    assert result.exit_code == 0 and "MY_KEY" in result.output and "sk-very-secret" not in result.output


def test_export_j2_and_openai():
    result = invoke("export", "co_star", "--format", "j2")
    assert result.exit_code == 0 and result.output.startswith("{#---\nname: co_star")
    result = invoke(
        "export", "zero_shot", "--format", "openai", "--var", "instruction=Sum.", "--var", "input=1 2"
    )
    assert json.loads(result.output) == [
        {"role": "user", "content": "### Instruction ###\nSum.\n\n### Input ###\n1 2"}
    ]
    result = invoke("export", "zero_shot", "--format", "openai")  # no values: the template, with placeholders
    template = json.loads(result.output)
    assert result.exit_code == 0 and [v["name"] for v in template["variables"]] == ["instruction", "input"]
    assert template["messages"] == [
        {"role": "user", "content": "### Instruction ###\n{{ instruction }}\n\n### Input ###\n{{ input }}"}
    ]
    result = invoke("export", "nothing-here", "--format", "j2")
    assert result.exit_code == 2 and "no template version 'nothing-here'" in result.stderr


def test_help_on_every_subcommand():
    for args in (
        ["--help"],
        ["templates", "--help"],
        ["templates", "list", "--help"],
        ["render", "--help"],
        ["run", "--help"],
        ["runs", "list", "--help"],
        ["runs", "show", "--help"],
        ["runs", "compare", "--help"],
        ["export", "--help"],
        ["import", "--help"],
        ["ape", "--help"],
        ["serve", "--help"],
        ["models", "list", "--help"],
        ["models", "fetch", "--help"],
        ["bench", "--help"],
    ):
        result = invoke(*args)
        assert result.exit_code == 0 and "Usage:" in result.output, args
