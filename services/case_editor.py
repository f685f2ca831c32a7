"""Test cases edited as data: a suite as two tables — cases (description, one column per variable, expected value,
threshold, tags) and assertions (case number, type, value, threshold, weight) — and back, with every problem
named by table, row and column. Values that look like JSON ([...] or {...}) are read as JSON (lists of examples,
schemas); a leading apostrophe keeps such a value as text."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from prompting.assertions import ASSERTION_TYPES, NEEDS_THRESHOLD, NEEDS_VALUE, base_type, check_type
from store import Store

CASE_FIELDS = ("Description", "Expected", "Threshold", "Tags")
ASSERTION_COLUMNS = ("Case", "Type", "Value", "Threshold", "Weight")
TYPES = tuple(ASSERTION_TYPES) + tuple(f"not-{t}" for t in ASSERTION_TYPES)


@dataclass
class Tables:
    variables: list[str]
    cases: list[dict[str, Any]] = field(default_factory=list)
    assertions: list[dict[str, Any]] = field(default_factory=list)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def tables(store: Store, suite_name: str | None, extra_variables: list[str] = ()) -> Tables:
    """A stored suite (or a new one) as the two tables; `extra_variables` adds columns (a template's variables)."""
    stored = store.suite_cases(store.get_suite(suite_name).id) if suite_name else []
    names = list(dict.fromkeys([k for c in stored for k in c.vars] + list(extra_variables)))
    out = Tables(names)
    for number, case in enumerate(stored, start=1):
        row = {"Description": case.description, **{n: _text(case.vars.get(n)) for n in names},
               "Expected": case.expected or "", "Threshold": case.threshold, "Tags": ", ".join(case.tags)}  # fmt: skip
        out.cases.append(row)
        for a in case.assertions:
            out.assertions.append({"Case": number, "Type": a.get("type"), "Value": _text(a.get("value")),
                                   "Threshold": a.get("threshold"), "Weight": a.get("weight", 1.0)})  # fmt: skip
    return out


def _blank(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and value != value)
        or (isinstance(value, str) and not value.strip())
    )


def _value(text: Any, where: str, problems: list[str]) -> Any:
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    if stripped.startswith("'"):  # as in spreadsheets: a leading apostrophe keeps "[INST] ..." as text
        return stripped[1:]
    if stripped[:1] in "[{":
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})")
    return text


def _number(value: Any, where: str, problems: list[str]) -> float | None:
    if _blank(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        problems.append(f"{where}: must be a number, got {value!r}")
        return None


def _case(row: dict[str, Any], number: int, variables: list[str], problems: list[str]) -> dict[str, Any]:
    values = {}
    for name in variables:
        if not _blank(row.get(name)):
            values[name] = _value(row[name], f"cases row {number}, column {name}", problems)
    tags = row.get("Tags") if not _blank(row.get("Tags")) else ""
    return {"description": "" if _blank(row.get("Description")) else str(row["Description"]), "vars": values,
            "expected": None if _blank(row.get("Expected")) else str(row["Expected"]),
            "threshold": _number(row.get("Threshold"), f"cases row {number}, column Threshold", problems),
            "tags": [t.strip() for t in str(tags).split(",") if t.strip()], "assertions": []}  # fmt: skip


def _assertion(row: dict[str, Any], number: int, cases: int, problems: list[str]) -> tuple[int, dict] | None:
    where = f"assertions row {number}"
    try:
        case = int(row.get("Case"))
    except (TypeError, ValueError):
        case = 0
    if not 1 <= case <= cases:
        problems.append(
            f"{where}, column Case: must be a case number from 1 to {cases}, got {row.get('Case')!r}"
        )
        return None
    kind = "" if _blank(row.get("Type")) else str(row["Type"]).strip()
    if check_type(kind):
        problems.append(f"{where}, column Type: unknown assertion type {kind!r}")
        return None
    out: dict[str, Any] = {"type": kind}
    if not _blank(row.get("Value")):
        out["value"] = _value(row["Value"], f"{where}, column Value", problems)
    elif base_type(kind)[0] in NEEDS_VALUE:
        problems.append(f"{where}, column Value: '{kind}' needs a value")
    threshold = _number(row.get("Threshold"), f"{where}, column Threshold", problems)
    if threshold is not None:
        out["threshold"] = threshold
    elif base_type(kind)[0] in NEEDS_THRESHOLD and "value" not in out:
        problems.append(f"{where}, column Threshold: '{kind}' needs a threshold")
    weight = _number(row.get("Weight"), f"{where}, column Weight", problems)
    if weight is not None and weight < 0:
        problems.append(f"{where}, column Weight: must be >= 0")
    elif weight is not None and weight != 1.0:
        out["weight"] = weight
    return case, out


def cases_from_tables(case_rows: list[dict[str, Any]], assertion_rows: list[dict[str, Any]],
                      variables: list[str]) -> tuple[list[dict[str, Any]], list[str]]:  # fmt: skip
    """The edited tables as cases, and every problem (table, row and column named). Blank rows are ignored."""
    problems: list[str] = []
    rows = [r for r in case_rows if not all(_blank(v) for v in r.values())]
    cases = [_case(row, number, variables, problems) for number, row in enumerate(rows, start=1)]
    if not cases:
        problems.append("a suite needs at least one case")
    for number, row in enumerate(
        (r for r in assertion_rows if not all(_blank(v) for v in r.values())), start=1
    ):
        found = _assertion(row, number, len(cases), problems)
        if found:
            cases[found[0] - 1]["assertions"].append(found[1])
    return cases, problems
