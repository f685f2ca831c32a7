"""`workbench templates` and `workbench render`: output and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess

from click.testing import CliRunner

from cli import main
from prompting.templates import library_names, render


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_templates_list_has_one_line_per_template():
    result = run("templates", "list")
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == library_names()
    assert any(line.startswith("co_star ") and "CO-STAR" in line for line in lines)


def test_templates_show():
    result = run("templates", "show", "tree_of_thoughts")
    assert result.exit_code == 0
    assert "stages: propose, evaluate" in result.output
    assert "  candidate (required, stages evaluate):" in result.output
    assert '"breadth": 2' in result.output


def test_render_json_equals_the_library_render():
    result = run(
        "render", "zero_shot", "--var", "instruction=Sum.", "--var", "input=1 2", "--delimiter", "xml"
    )
    assert result.exit_code == 0
    assert json.loads(result.output) == render(
        "zero_shot", {"instruction": "Sum.", "input": "1 2"}, delimiter="xml"
    )


def test_render_text_vars_file_and_json_values(tmp_path):
    vars_file = tmp_path / "vars.json"
    vars_file.write_text(json.dumps({"instruction": "Label it.", "input": "great"}))
    examples = json.dumps([{"input": "bad", "output": "negative"}])
    result = run(
        "render",
        "few_shot",
        "--vars-file",
        str(vars_file),
        "--var",
        f"examples={examples}",
        "--format",
        "text",
    )
    assert result.exit_code == 0
    assert result.output == "[system]\nLabel it.\n\n[user]\nbad\n\n[assistant]\nnegative\n\n[user]\ngreat\n"


def test_render_a_path_outside_the_library(tmp_path):
    path = tmp_path / "mine.j2"
    path.write_text("Say {{ word }}.")
    result = run("render", str(path), "--var", "word=hi")
    assert json.loads(result.output) == [{"role": "user", "content": "Say hi."}]


def test_domain_errors_exit_2_with_the_message(tmp_path):
    result = CliRunner().invoke(main, ["render", "co_star", "--var", "context=c"])
    assert result.exit_code == 2
    assert (
        result.stderr
        == "error: template 'co_star' is missing variables: audience, objective, response, style, tone\n"
    )

    result = CliRunner().invoke(main, ["render", "nope"])
    assert result.exit_code == 2 and result.stderr.startswith(
        "error: template 'nope' not found; available: ape,"
    )

    broken = tmp_path / "broken.j2"
    broken.write_text("ok\n{% if %}")
    result = CliRunner().invoke(main, ["render", str(broken)])
    assert result.exit_code == 2 and result.stderr.startswith("error: syntax error in broken.j2, line 2:")

    evil = tmp_path / "evil.j2"
    evil.write_text("{{ ''.__class__.__mro__ }}")
    result = CliRunner().invoke(main, ["render", str(evil)])
    assert result.exit_code == 2 and "refused by the sandbox" in result.stderr

    bad_json = tmp_path / "v.json"
    bad_json.write_text("{\n  'x': 1\n}")
    result = CliRunner().invoke(main, ["render", "zero_shot", "--vars-file", str(bad_json)])
    assert result.exit_code == 2 and "v.json, line 2" in result.stderr


def test_console_script_is_installed():
    exe = shutil.which("workbench") or str(
        __import__("pathlib").Path(__import__("sys").executable).parent / "workbench"
    )
    done = subprocess.run(
        [exe, "render", "zero_shot_cot", "--var", "question=2+2?", "--format", "text"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[user]\n### Question ###\n2+2?\n\nLet's think step by step.")


def test_models_list_and_fetch_are_idempotent():
    listing = CliRunner().invoke(main, ["models", "list"])
    assert listing.exit_code == 0
    assert "smollm2-135m-instruct  [fetched]  SmolLM2-135M-Instruct (GGUF Q4_1" in listing.output
    fetched = CliRunner().invoke(main, ["models", "fetch"])  # already there: no download, no conversion
    assert fetched.exit_code == 0 and fetched.stdout.startswith("smollm2-135m-instruct: ")
    assert fetched.stderr == ""
    unknown = CliRunner().invoke(main, ["models", "fetch", "gpt-17"])
    assert unknown.exit_code == 2 and "unknown model 'gpt-17'; available: " in unknown.stderr
