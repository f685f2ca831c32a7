from __future__ import annotations

import os
from pathlib import Path

import pytest

from prompting import templates
from prompting.delimiters import STYLES
from prompting.errors import MissingVariables, RenderError, TemplateNotFound, TemplateSyntax
from prompting.templates import Template, library_names, load, render

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
REQUIRED_LIBRARY = {
    "co_star",
    "zero_shot",
    "few_shot",
    "chain_of_thought",
    "zero_shot_cot",
    "self_consistency",
    "generate_knowledge",
    "tree_of_thoughts",
    "ape",
    "verbalizer",
    "dataset_analysis",
    "stepwise",
}


def example_vars(template: Template) -> dict:
    return {v.name: v.example for v in template.variables if v.example is not None}


def golden_cases():
    for name in library_names():
        template = load(name)
        for stage in template.stages or [None]:
            for style in STYLES:
                yield name, stage, style


def as_text(messages: list[dict[str, str]]) -> str:
    return "".join(f"--- {m['role']} ---\n{m['content']}\n" for m in messages)


def test_library_has_every_technique():
    assert REQUIRED_LIBRARY <= set(library_names())


@pytest.mark.parametrize("name", sorted(REQUIRED_LIBRARY))
def test_front_matter_is_complete(name):
    template = load(name)
    assert template.name == name
    assert template.technique and template.description
    assert template.variables, "every template declares its variables"
    for var in template.variables:
        assert var.description, f"{name}.{var.name} needs a description"
        assert var.example is not None or not var.required or var.default is not None
    assert template.strategy.get("name")


@pytest.mark.parametrize("name,stage,style", list(golden_cases()))
def test_golden(name, stage, style):
    template = load(name)
    text = as_text(template.render(example_vars(template), delimiter=style, stage=stage))
    path = GOLDEN / f"{name}{'.' + stage if stage else ''}.{style}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"missing golden file {path.name}; run with UPDATE_GOLDEN=1 once and review it"
    assert text == path.read_text(encoding="utf-8")


def test_co_star_sections_in_order():
    template = load("co_star")
    content = template.render(example_vars(template))[0]["content"]
    headers = [line for line in content.splitlines() if line.startswith("###")]
    assert headers == [
        f"### {s} ###" for s in ("Context", "Objective", "Style", "Tone", "Audience", "Response")
    ]


def test_missing_variables_names_all_of_them():
    with pytest.raises(MissingVariables) as err:
        render("co_star", {"context": "c", "objective": "o"})
    assert str(err.value) == "template 'co_star' is missing variables: audience, response, style, tone"
    assert err.value.names == ["audience", "response", "style", "tone"]


def test_missing_variables_are_per_stage():
    # `candidate` is needed only by the evaluate stage.
    assert render("tree_of_thoughts", {"problem": "p"}, stage="propose")
    with pytest.raises(MissingVariables) as err:
        render("tree_of_thoughts", {"problem": "p"}, stage="evaluate")
    assert err.value.names == ["candidate"]


def test_undeclared_variable_in_a_file_is_reported(tmp_path):
    path = tmp_path / "t.j2"
    path.write_text("Hello {{ who }}, {{ greeting }}!")
    with pytest.raises(MissingVariables) as err:
        render(path, {})
    assert str(err.value) == "template 't' is missing variables: greeting, who"


def test_plain_file_renders_as_one_user_message(tmp_path):
    path = tmp_path / "t.j2"
    path.write_text("Translate to French: {{ text }}")
    assert render(path, {"text": "cat"}) == [{"role": "user", "content": "Translate to French: cat"}]


def test_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.j2"
    path.write_text("{% message 'user' %}\nline two\n{{ oops }\n{% endmessage %}\n")
    with pytest.raises(TemplateSyntax) as err:
        load(path)
    assert str(err.value) == "syntax error in broken.j2, line 3: unexpected '}'"
    assert err.value.line == 3


def test_unknown_template_lists_what_exists():
    with pytest.raises(TemplateNotFound) as err:
        load("co_stars")
    message = str(err.value)
    assert message.startswith("template 'co_stars' not found; available: ")
    assert message.endswith(", ".join(library_names()))


def test_unknown_stage_and_choice_are_errors():
    with pytest.raises(RenderError, match="has no stage 'judge'; stages: propose, evaluate, answer"):
        render("tree_of_thoughts", {"problem": "p"}, stage="judge")
    few = load("few_shot")
    with pytest.raises(RenderError, match="must be one of: turns, section"):
        few.render({**example_vars(few), "examples_as": "table"})


def test_few_shot_turns_and_section():
    few = load("few_shot")
    values = example_vars(few)
    turns = few.render(values)
    assert [m["role"] for m in turns] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert turns[-1]["content"] == values["input"]
    section = few.render({**values, "examples_as": "section"})
    assert [m["role"] for m in section] == ["system", "user"]
    for example in values["examples"]:
        assert f"Input: {example['input']}\nOutput: {example['output']}" in section[1]["content"]


def test_drop_sections_removes_them_cleanly():
    template = load("co_star")
    full = template.render(example_vars(template))[0]["content"]
    dropped = template.render(example_vars(template), drop_sections={"Tone"})[0]["content"]
    assert "### Tone ###" in full and "### Tone ###" not in dropped
    assert "\n\n\n" not in dropped
    assert dropped == full.replace("### Tone ###\nFriendly and reassuring.\n\n", "")


def test_verbalizer_labels_from_front_matter():
    template = load("verbalizer")
    assert template.labels == {
        "positive": ["positive", "great"],
        "negative": ["negative", "terrible"],
        "neutral": ["neutral"],
    }
    content = template.render({"text": "fine"})[0]["content"]
    assert "Answer with one word: positive, negative, neutral." in content


def test_variables_lists_what_a_template_needs():
    names = [v.name for v in templates.variables("co_star")]
    assert names == ["context", "objective", "style", "tone", "audience", "response"]


def test_answer_patterns_extract_the_final_answer():
    import re

    for name in ("chain_of_thought", "zero_shot_cot", "generate_knowledge"):
        pattern = re.compile(load(name).answer_pattern)
        assert pattern.findall("Reasoning...\nAnswer: 42\n")[-1] == "42"
    pattern = re.compile(load("self_consistency").answer_pattern)
    assert pattern.findall("6/2 = 3, 70 - 3 = 67.\nFinal answer: 67")[-1] == "67"
