"""Bounded rendering: templates that would build huge values or loop without end fail at once with an error
naming the limit (and its setting), in the library, the CLI and the Build page."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from prompting.limits import RenderLimitExceeded
from prompting.templates import Template

BOMBS = {
    "repetition": "{{ 'A' * 2000000000 }}",
    "long loop": "{% for i in range(10**8) %}x{% endfor %}",
    "nested loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "filter width": "{{ 'a'|center(10**9) }}",
    "indent": "{{ 'a\\nb'|indent(10**9) }}",
    "percent width": "{{ '%1000000000d' % 1 }}",
    "format width": "{{ '{:>1000000000}'.format(1) }}",
    "method width": "{{ 'x'.ljust(10**9) }}",
    "power": "{{ 2 ** (10 ** 9) }}",
    "lipsum": "{{ lipsum(n=10**8) }}",
    "doubling": "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_each_bomb_fails_naming_the_limit(name):
    with pytest.raises(RenderLimitExceeded) as caught:
        Template.from_source(BOMBS[name], name=name).render({})
    message = str(caught.value)
    assert message.startswith(f"template '{name}' was refused by the sandbox: render limit exceeded: ")
    assert "WORKBENCH_RENDER_MAX_CHARS" in message or "WORKBENCH_RENDER_MAX_STEPS" in message


def test_the_nested_loop_stops_at_the_step_budget(monkeypatch):
    monkeypatch.setenv("WORKBENCH_RENDER_MAX_STEPS", "50000")
    with pytest.raises(
        RenderLimitExceeded, match=r"more than 50,000 steps .* \(limit 50,000; set WORKBENCH_RENDER_MAX_STEPS"
    ):
        Template.from_source(BOMBS["nested loops"]).render({})


def test_the_size_cap_is_a_setting(monkeypatch):
    source = "{{ 'ab' * n }}"
    assert len(Template.from_source(source).render({"n": 400_000})[0]["content"]) == 800_000
    monkeypatch.setenv("WORKBENCH_RENDER_MAX_CHARS", "10000")
    with pytest.raises(RenderLimitExceeded, match=r"a repetition of 800,000 .* \(limit 10,000"):
        Template.from_source(source).render({"n": 400_000})


def test_ordinary_templates_are_untouched():
    rendered = Template.from_source("{% for i in range(3) %}{{ i }},{% endfor %}{{ '%5d' % 7 }}").render({})
    assert rendered == [{"role": "user", "content": "0,1,2,    7"}]


def test_the_cli_reports_the_limit(tmp_path: Path):
    path = tmp_path / "bomb.j2"
    path.write_text(BOMBS["repetition"])
    result = CliRunner().invoke(main, ["render", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: template 'bomb' was refused by the sandbox: render limit exceeded: a repetition of 2,000,000,000"
    )


def test_the_build_page_reports_the_limit(tmp_path: Path):
    from streamlit.testing.v1 import AppTest

    root = Path(__file__).resolve().parents[2]
    at = AppTest.from_file(str(root / "app.py"), default_timeout=60)
    at.run()
    at.selectbox(key="w_build_template").set_value("zero_shot").run()
    at.text_area(key="w_build_zero_shot_input").set_value("{{ 'A' * 2000000000 }}").run()
    assert not at.exception  # data is data: the value is inserted, never evaluated
    assert not any("render limit" in e.value for e in at.error)  # (hence below: a too large value instead)
    at.text_area(key="w_build_zero_shot_input").set_value("A" * 1_100_000).run()
    assert any("render limit exceeded: a rendered prompt of" in e.value for e in at.error)
