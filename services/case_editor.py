"""Test cases edited as data: a suite as two tables — cases (description, one column per variable, expected value,
threshold, tags) and assertions (case number, conversation turn, type, value, threshold, weight) — and back, with
every problem named by table, row and column. Values that look like JSON ([...] or {...}) are read as JSON (lists
of examples, schemas); a leading apostrophe keeps such a value as text. A conversation case is built from a turns
table (role, content, an assertion on the model's answer to that turn)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from prompting.assertions import ASSERTION_TYPES, NEEDS_THRESHOLD, NEEDS_VALUE, base_type, check_type
from prompting.conversation import TURNS_VAR, ConversationError, check_turn, parse_turns
from store import Store

CASE_FIELDS = ("Description", "Expected", "Threshold", "Tags")
ASSERTION_COLUMNS = ("Case", "Turn", "Type", "Value", "Threshold", "Weight")
ASSERTION_TYPE_NAMES = tuple(ASSERTION_TYPES)


@dataclass
class Tables:
    variables: list[str]
    cases: list[dict[str, Any]] = field(default_factory=list)
    assertions: list[dict[str, Any]] = field(default_factory=list)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def tables(
    store: Store, suite_name: str | None, extra_variables: list[str] = (), blank_rows: int = 0
) -> Tables:
    """A stored suite (or a new one) as the two tables; `extra_variables` adds columns (a template's variables);
    `blank_rows` empty rows follow the cases in each table, to type into (blank rows are never saved). Empty
    cells are "" (never None), threshold text included."""
    stored = store.suite_cases(store.get_suite(suite_name).id) if suite_name else []
    names = list(dict.fromkeys([k for c in stored for k in c.vars] + list(extra_variables)))
    out = Tables(names)
    for number, case in enumerate(stored, start=1):
        row = {
            "Description": case.description,
            **{n: _text(case.vars.get(n)) for n in names},
            "Expected": case.expected or "",
            "Threshold": _text(case.threshold),
            "Tags": ", ".join(case.tags),
        }
        out.cases.append(row)
        for a in case.assertions:
            out.assertions.append(
                {
                    "Case": str(number),
                    "Turn": _text(a.get("turn")),
                    "Type": a.get("type"),
                    "Value": _text(a.get("value")),
                    "Threshold": _text(a.get("threshold")),
                    "Weight": a.get("weight", 1.0),
                }
            )
    out.cases += [{c: "" for c in ("Description", *names, "Expected", "Threshold", "Tags")}] * blank_rows
    out.assertions += [
        {"Case": "", "Turn": "", "Type": "", "Value": "", "Threshold": "", "Weight": 1.0}
    ] * blank_rows
    return out


@dataclass
class Fallback:
    """A variable of the prompt to be run, and what a case that leaves it blank gets."""

    name: str
    value: Any
    source: str  # "the version's value", "the template's default", or "none: every case must set it"


def fallbacks(store: Store, ref: str) -> tuple[list[str], list[Fallback]]:
    """For a stored version (NAME@vN) or a library template (library:NAME): the variables a case should set (those
    with nothing to fall back on) and, for every variable, what a blank cell falls back to when the suite runs."""
    from services.exports import resolve

    prompt = resolve(store, ref).prompt
    template = prompt.template
    first = template.stages[0] if template.stages else None
    out, required = [], []
    for var in template.variables:
        if var.stages and first not in var.stages:
            continue  # filled by a strategy at a later stage
        if var.name in prompt.variables:
            out.append(Fallback(var.name, prompt.variables[var.name], "the version's value"))
        elif var.name in template.defaults:
            out.append(Fallback(var.name, template.defaults[var.name], "the template's default"))
        else:
            out.append(Fallback(var.name, None, "none: every case must set it"))
            required.append(var.name)
    return required, out


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


def _fraction(value: Any, where: str, problems: list[str]) -> float | None:
    number = _number(value, where, problems)
    if number is not None and not 0.0 <= number <= 1.0:
        problems.append(f"{where}: must be a fraction from 0 to 1, got {value!r}")
    return number


def _case(row: dict[str, Any], number: int, variables: list[str], problems: list[str]) -> dict[str, Any]:
    values = {}
    for name in variables:
        if not _blank(row.get(name)):
            values[name] = _value(row[name], f"cases row {number}, column {name}", problems)
    tags = row.get("Tags") if not _blank(row.get("Tags")) else ""
    return {
        "description": "" if _blank(row.get("Description")) else str(row["Description"]),
        "vars": values,
        "expected": None if _blank(row.get("Expected")) else str(row["Expected"]),
        "threshold": _fraction(row.get("Threshold"), f"cases row {number}, column Threshold", problems),
        "tags": [t.strip() for t in str(tags).split(",") if t.strip()],
        "assertions": [],
    }


def _turn(value: Any, where: str, problems: list[str]) -> int | str | None:
    """A conversation turn: blank (the last answer), a number, or all / any / transcript."""
    if _blank(value):
        return None
    text = str(value).strip().lower()
    turn: int | str = int(float(text)) if re.fullmatch(r"\d+(\.0)?", text) else text
    problem = check_turn(turn)
    if problem:
        problems.append(f"{where}: {problem}")
        return None
    return turn


def _assertion(
    row: dict[str, Any], number: int, rows: list[int], problems: list[str]
) -> tuple[int, dict] | None:
    """An assertion row (its grid row `number`) and the grid row of the case it belongs to (one of `rows`)."""
    where = f"assertions row {number}"
    try:
        case = int(float(row.get("Case")))
    except (TypeError, ValueError):
        case = 0
    if case not in rows:
        shown = (
            f"{rows[0]} to {rows[-1]}"
            if rows == list(range(rows[0], rows[-1] + 1))
            else ", ".join(map(str, rows))
        )
        problems.append(
            f"{where}, column Case: must be the row number of a case ({shown}), got {row.get('Case')!r}"
        )
        return None
    kind = "" if _blank(row.get("Type")) else str(row["Type"]).strip()
    if check_type(kind):
        problems.append(f"{where}, column Type: unknown assertion type {kind!r}")
        return None
    out: dict[str, Any] = {"type": kind}
    turn = _turn(row.get("Turn"), f"{where}, column Turn", problems)
    if turn is not None:
        out["turn"] = turn
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


def cases_from_tables(
    case_rows: list[dict[str, Any]], assertion_rows: list[dict[str, Any]], variables: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The edited tables as cases, and every problem (table, row and column named, rows counted as the grid shows
    them). Blank rows are ignored wherever they are; an assertion names its case by the case's grid row."""
    problems: list[str] = []
    numbered = [(n, r) for n, r in enumerate(case_rows, start=1) if not all(_blank(v) for v in r.values())]
    cases = [_case(row, number, variables, problems) for number, row in numbered]
    if not cases:
        problems.append("a suite needs at least one case")
        return cases, problems
    position = {number: i for i, (number, _) in enumerate(numbered)}
    for number, row in enumerate(assertion_rows, start=1):
        if all(_blank(row.get(c)) for c in ASSERTION_COLUMNS if c != "Weight"):
            continue
        found = _assertion(row, number, list(position), problems)
        if found:
            cases[position[found[0]]]["assertions"].append(found[1])
    return cases, problems


# --- a conversation case, turn by turn ----------------------------------------------------------------------------

TURN_COLUMNS = ("Role", "Content", "Assert type", "Assert value")


def blank_turns(rows: int) -> list[dict[str, str]]:
    return [{"Role": "user", "Content": "", "Assert type": "", "Assert value": ""} for _ in range(rows)]


def _turn_entry(row: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any] | None:
    role = "user" if _blank(row.get("Role")) else str(row["Role"]).strip().lower()
    if role not in ("user", "assistant"):
        problems.append(f"{where}, column Role: user or assistant, got {role!r}")
        return None
    if _blank(row.get("Content")):
        problems.append(f"{where}, column Content: a turn needs text")
        return None
    entry: dict[str, Any] = {role: str(row["Content"])}
    kind = "" if _blank(row.get("Assert type")) else str(row["Assert type"]).strip()
    if kind:
        if check_type(kind):
            problems.append(f"{where}, column Assert type: unknown assertion type {kind!r}")
            return None
        assertion: dict[str, Any] = {"type": kind}
        if not _blank(row.get("Assert value")):
            assertion["value"] = _value(row["Assert value"], f"{where}, column Assert value", problems)
        entry["assert"] = [assertion]
    return entry


def conversation_case(
    description: str, rows: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, list[str]]:
    """A conversation case from the turns table (prompting/conversation.py's rules: a user turn not followed by an
    assistant turn is answered by the model; an assertion on a row judges the model's answer to that turn), and
    every problem, row and column named."""
    problems: list[str] = []
    entries = []
    for number, row in enumerate(rows, start=1):
        if all(_blank(row.get(c)) for c in TURN_COLUMNS if c != "Role"):
            continue
        entry = _turn_entry(row, f"turns row {number}", problems)
        if entry:
            entries.append(entry)
    if problems:
        return None, problems
    try:
        messages, assertions = parse_turns(entries)
    except ConversationError as exc:
        return None, [f"turns: {exc}"]
    case = {
        "description": description.strip() or "conversation",
        "vars": {TURNS_VAR: messages},
        "assertions": assertions,
        "threshold": None,
        "tags": ["conversation"],
    }
    return case, []


def stored_cases(store: Store, suite_name: str | None) -> list[dict[str, Any]]:
    """A stored suite's cases in the shape suites are saved from (empty for a new suite)."""
    if not suite_name:
        return []
    return [
        {
            "description": c.description,
            "vars": c.vars,
            "expected": c.expected,
            "assertions": c.assertions,
            "threshold": c.threshold,
            "tags": c.tags,
        }
        for c in store.suite_cases(store.get_suite(suite_name).id)
    ]
