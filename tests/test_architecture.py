"""The layering and size rules of the README's Layout section, enforced: import-linter's contracts (pyproject),
no module over 500 lines and no function over 60 lines in the packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["prompting", "store", "engine", "services", "views", "cli", "bench"]
MODULES = ["app.py", "settings.py", "quant_methods.py"]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
# A function may exceed the limit only with a reason on its `def` line: `# length: <why>`.
EXCEPTION_MARK = "# length:"


def sources() -> list[Path]:
    files = [ROOT / m for m in MODULES]
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_no_module_over_the_line_limit():
    long = {
        str(p.relative_to(ROOT)): n
        for p in sources()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines: {long}"


def long_functions(path: Path) -> list[str]:
    text = path.read_text()
    lines = text.splitlines()
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES and EXCEPTION_MARK not in lines[node.lineno - 1]:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_over_the_line_limit():
    found = [item for path in sources() for item in long_functions(path)]
    assert found == [], (
        "functions over 60 lines (split them, or mark a rare exception with '# length: why'):\n"
        + "\n".join(found)
    )
