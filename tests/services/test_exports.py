"""Exports that the tools they target accept: placeholder templates that render back to exactly what `render`
produces, a version's `.j2` that brings its settings along, a request body the engine answers, promptfoo configs
that the real promptfoo evaluates with the same verdicts as ours, promptfoo's results imported as a run, and an
HTML report that opens with the network blocked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from prompting.delimiters import STYLES
from prompting.placeholders import as_template, fill
from prompting.strategies import Prompt
from prompting.templates import library_names, load
from services import exports, open_store

ROOT = Path(__file__).resolve().parents[2]
PROMPTFOO = ROOT / ".tools" / "promptfoo" / "node_modules" / ".bin"


def example_values(template) -> dict:
    return {
        v.name: v.example if v.example is not None else v.default
        for v in template.variables
        if not v.stages or not template.stages or template.stages[0] in v.stages
    }


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("name", library_names())
def test_the_placeholder_template_renders_back_to_what_render_produces(name, style):
    template = load(name)
    exported = as_template(Prompt(template, delimiter=style))
    values = {k: v for k, v in example_values(template).items() if k not in exported.fixed}
    rendered = template.render({**exported.fixed, **values}, delimiter=style)
    assert fill(exported.messages, values, style) == rendered
    assert all("{{ " + v["name"] + " }}" in json.dumps(exported.messages) for v in exported.variables)


def test_a_version_exported_as_j2_renders_with_its_settings(tmp_path):
    store = open_store()
    version = store.save_version(
        "zero_shot",
        load("zero_shot").source,
        variables={"instruction": "Sum."},
        delimiter="xml",
        guardrails={"rules": ["Be brief."]},
    )
    text, note = exports.export_j2(store, version.label)
    path = tmp_path / "v.j2"
    path.write_text(text)
    result = CliRunner().invoke(main, ["render", str(path), "--var", "input=1 2"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == exports.resolve(store, version.label).prompt.render({"input": "1 2"})
    assert "<instruction>" in result.output and "Be brief." in result.output and note is None


def test_library_template_and_stored_version_never_shadow_each_other():
    store = open_store()
    store.save_version(
        "zero_shot", load("zero_shot").source, variables={"instruction": "A."}, delimiter="xml"
    )
    found = exports.resolve(store, "zero_shot")
    assert found.version is None and "stored versions of that name: zero_shot@v1" in found.note
    assert exports.resolve(store, "zero_shot@v1").version is not None
    assert exports.resolve(store, "zero_shot@latest").prompt.delimiter == "xml"
    assert exports.resolve(store, "library:zero_shot").prompt.delimiter == "hash"


def test_the_request_body_carries_the_schema_and_a_curl_line():
    store = open_store()
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    version = store.save_version(
        "zero_shot",
        load("zero_shot").source,
        variables={"instruction": "Capital?"},
        guardrails={"json_schema": schema},
    )
    body = exports.request_body(store, version.label, {"input": "France"})
    assert body["response_format"]["json_schema"]["schema"] == schema and body["temperature"] == 0
    assert body["messages"][-1]["content"].endswith("France")
    assert exports.curl(body, "http://127.0.0.1:9/v1").startswith(
        "curl -s http://127.0.0.1:9/v1/chat/completions"
    )


def test_a_local_provider_the_engine_does_not_serve_is_refused_by_name(fake_api):
    from prompting.providers import ProviderSpec
    from services.errors import StoreError
    from services.promptfoo_export import served_providers
    from tests.conftest import free_port

    int8 = ProviderSpec.parse("local:smollm2-135m-instruct@int8")
    remote = ProviderSpec.parse("openai:chat:fake-model", {"apiBaseUrl": f"{fake_api.url}/v1"})
    # the fake API serves only fake-model: the local provider is left out, the remote one stays
    kept, notes = served_providers([int8, remote], f"{fake_api.url}/v1")
    assert kept == [remote] and notes[0].startswith("left out local:smollm2-135m-instruct@int8")
    with pytest.raises(StoreError, match="no provider of this export is served: left out local:smollm2"):
        served_providers([int8], f"{fake_api.url}/v1")
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    kept, notes = served_providers([int8], nowhere)
    assert kept == [int8] and notes == [
        f"no engine answers at {nowhere} to check local:smollm2-135m-instruct@int8 against: promptfoo needs one "
        "serving each (`make run` serves the default)"
    ]
