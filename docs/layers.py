"""The README's "who may import whom" table, generated from the import contracts in pyproject.toml (the ones
`lint-imports` enforces): `python docs/layers.py` rewrites the block between the README's layers markers, and
tests/test_architecture.py fails when the block and the contracts disagree."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- layers -->\n)(.*?)(<!-- /layers -->)", re.S)


def contracts() -> tuple[list[str], list[dict]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return config["root_packages"], config["contracts"]


def table() -> str:
    """One row per package: the project packages it may import, those a contract forbids, and the narrower
    rules (a module that may not import another; an import a contract allows by name)."""
    packages, rules = contracts()
    forbidden: dict[str, set[str]] = {p: set() for p in packages}
    notes: dict[str, list[str]] = {p: [] for p in packages}
    for rule in rules:
        for source in rule["source_modules"]:
            top = source.split(".")[0]
            targets = [m for m in rule["forbidden_modules"] if m.split(".")[0] in packages and m != top]
            if source == top:
                forbidden[top] |= {m for m in targets if "." not in m}
            else:
                notes[top].append(f"`{source}` imports none of {', '.join(f'`{m}`' for m in targets)}")
        for allowed in rule.get("ignore_imports", []):
            importer, imported = (part.strip() for part in allowed.split("->"))
            if importer.split(".")[0] != imported.split(".")[0]:
                notes[importer.split(".")[0]].append(f"only `{importer}` imports `{imported}`")
    rows = ["| package | may import | may not import | narrower rules |", "|---|---|---|---|"]
    for package in packages:
        allowed = [p for p in packages if p != package and p not in forbidden[package]]
        rows.append(
            f"| `{package}` | {', '.join(allowed) or '—'} | {', '.join(sorted(forbidden[package])) or '—'} "
            f"| {'; '.join(dict.fromkeys(notes[package])) or '—'} |"
        )
    return "\n".join(rows) + "\n"


def main() -> int:
    text = README.read_text(encoding="utf-8")
    updated, count = BLOCK.subn(lambda m: m.group(1) + table() + m.group(3), text)
    if not count:
        print("no <!-- layers --> block in the README", file=sys.stderr)
        return 1
    README.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
