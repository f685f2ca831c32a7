"""The layering and size rules of the README's Layout section, enforced: import-linter's contracts (pyproject),
no module over 500 lines and no function over 60 lines in the packages."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["prompting", "store", "engine", "services", "pages", "ui", "cli", "bench"]
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


STORE_FACTORIES = {"store", "open_store"}  # what hands pages and the CLI the store, to pass on to services


def store_method_calls(path: Path) -> list[str]:
    """Calls of the store's own methods in a page or CLI module: a name bound to `store()` / `open_store()` (or a
    parameter named db or store) whose attribute is called, or `store().method(...)`."""
    tree = ast.parse(path.read_text())
    handles = {"db", "store"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name in STORE_FACTORIES:
                handles |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        target = node.func.value
        direct = isinstance(target, ast.Call) and getattr(target.func, "id", None) in STORE_FACTORIES
        if direct or (isinstance(target, ast.Name) and target.id in handles):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.func.attr}()")
    return found


def test_pages_and_the_cli_call_services_not_the_store():
    """The import contract keeps `store` out of pages and the CLI; this keeps them from calling the methods of
    the store object they pass to services (everything they need is a service function)."""
    files = [
        *sorted((ROOT / "pages").glob("*.py")),
        *sorted((ROOT / "ui").glob("*.py")),
        *sorted((ROOT / "cli").glob("*.py")),
        ROOT / "app.py",
    ]
    found = [call for path in files for call in store_method_calls(path)]
    assert found == [], "store methods called outside services:\n" + "\n".join(found)


def test_pages_holds_exactly_the_pages_app_py_navigates():
    listed = set(re.findall(r'st\.Page\("pages/(\w+)\.py"', (ROOT / "app.py").read_text()))
    scripts = {p.stem for p in (ROOT / "pages").glob("*.py") if p.stem != "__init__"}
    assert listed == scripts and listed, (listed, scripts)


def test_the_formatter_decides_layout():
    """No `# fmt: skip`: lines are laid out by `ruff format` (E501 holds the rest to 120 columns in `make lint`)."""
    marked = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in [*sources(), *sorted((ROOT / "tests").rglob("*.py")), *sorted((ROOT / "docs").rglob("*.py"))]
        for n, line in enumerate(p.read_text().splitlines(), start=1)
        if line.rstrip().endswith("# fmt" + ": skip")
    ]
    assert marked == [], f"lines that opt out of the formatter: {marked}"


def test_the_readmes_layer_table_is_the_contracts():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import layers
    finally:
        sys.path.remove(str(ROOT / "docs"))
    block = layers.BLOCK.search((ROOT / "README.md").read_text())
    assert block and block.group(2) == layers.table(), (
        "the README's layer table is stale: run python docs/layers.py"
    )
