"""Test cases of suites: the promptfoo test shape (description, vars, assert, threshold), and test files in YAML,
CSV (promptfoo's `__expected`/`__description` columns) and JSONL. Every problem names the file and the line or
field (`suite.yaml, line 12 (tests[2].assert[0].type): unknown assertion type 'javascript'`); unsupported assertion
types are collected and reported together, never dropped.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from prompting.assertions import HANDLERS, NEEDS_VALUE, base_type
from prompting.conversation import (
    SIMULATED_VAR,
    TURNS_VAR,
    ConversationError,
    SimulatedUser,
    check_turn,
    parse_turns,
)
from prompting.errors import PromptingError

TEST_KEYS = {
    "description",
    "vars",
    "assert",
    "threshold",
    "options",
    "metadata",
    "tags",
    "conversation",
    "simulated_user",
}
ASSERT_KEYS = {"type", "value", "threshold", "weight", "metric", "provider", "turn"}


class SuiteError(PromptingError):
    def __init__(self, file: str, where: str, message: str):
        self.file, self.where, self.detail = file, where, message
        super().__init__(f"{file}, {where}: {message}" if where else f"{file}: {message}")


@dataclass
class SuiteCase:
    description: str = ""
    vars: dict[str, Any] = field(default_factory=dict)
    assertions: list[dict[str, Any]] = field(default_factory=list)
    threshold: float | None = None
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "vars": self.vars,
            "assertions": self.assertions,
            "threshold": self.threshold,
            "tags": self.tags,
        }


# --- locating problems ------------------------------------------------------------------------------------


class Where:
    """Turns a field path into `line N (a.b[2].c)` using the YAML node marks."""

    def __init__(self, file: str, lines: dict[tuple, int] | None = None, line_offset: int = 0):
        self.file, self.lines, self.offset = file, lines or {}, line_offset
        self.unsupported: list[str] = []  # unsupported assertion types, all reported together

    def raise_unsupported(self) -> None:
        if self.unsupported:
            supported = ", ".join(sorted(HANDLERS))
            raise SuiteError(
                self.file,
                "",
                f"unsupported assertion types: {'; '.join(self.unsupported)} "
                f"(supported: {supported}, each optionally with a not- prefix)",
            )

    def __call__(self, *path: Any) -> str:
        dotted = ""
        for part in path:
            dotted += f"[{part}]" if isinstance(part, int) else (f".{part}" if dotted else str(part))
        probe = tuple(path)
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe)
        if line is None:
            return dotted
        return f"line {line + self.offset} ({dotted})" if dotted else f"line {line + self.offset}"

    def error(self, message: str, *path: Any) -> SuiteError:
        return SuiteError(self.file, self(*path), message)


def _line_map(node: yaml.Node, path: tuple = ()) -> dict[tuple, int]:
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = path + (key.value,)
            lines[child] = key.start_mark.line + 1
            for sub, line in _line_map(value, child).items():
                lines.setdefault(sub, line)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_map(item, path + (i,)))
    return lines


def read_yaml(path: Path) -> tuple[Any, dict[tuple, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(path.name, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SuiteError(path.name, where, f"invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    return data, (_line_map(node) if node is not None else {})


# --- cases and assertions -----------------------------------------------------------------------------------


def resolve_path(base: Path, ref: str) -> Path:
    target = Path(ref.removeprefix("file://")).expanduser()
    return target if target.is_absolute() else base / target


def _assertion(raw: Any, where: Where, *path: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise where.error("each assertion must be a mapping with a type", *path)
    unknown = set(raw) - ASSERT_KEYS
    if unknown:
        raise where.error(f"unknown assertion keys: {', '.join(sorted(unknown))}", *path)
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise where.error("assertion type is missing", *path, "type")
    name, _ = base_type(kind)
    if name not in HANDLERS:
        where.unsupported.append(f"'{kind}' at {where(*path, 'type')}")
        return {"type": kind}
    for key in ("threshold", "weight"):
        if key in raw and (isinstance(raw[key], bool) or not isinstance(raw[key], int | float)):
            raise where.error(f"{key} must be a number, got {raw[key]!r}", *path, key)
    if raw.get("weight", 1) < 0:
        raise where.error("weight must be >= 0", *path, "weight")
    if name in NEEDS_VALUE and raw.get("value") in (None, ""):
        raise where.error(f"assertion '{kind}' needs a value", *path, "value")
    if (
        name in ("latency", "cost", "perplexity")
        and raw.get("threshold") is None
        and raw.get("value") is None
    ):
        raise where.error(f"assertion '{kind}' needs a threshold", *path)
    if name == "regex":
        try:
            re.compile(str(raw["value"]))
        except re.error as exc:
            raise where.error(f"invalid regex: {exc}", *path, "value") from None
    problem = check_turn(raw.get("turn"))
    if problem:
        raise where.error(problem, *path, "turn")
    return {k: raw[k] for k in ("type", "value", "threshold", "weight", "turn") if k in raw}


def conversation_vars(raw: dict, where: Where, path: tuple) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A test's `conversation` and `simulated_user` as the reserved case variables, and the assertions written
    on its turns (prompting/conversation.py)."""
    variables, assertions = {}, []
    try:
        if raw.get("conversation") is not None:
            variables[TURNS_VAR], assertions = parse_turns(raw["conversation"])
        if raw.get("simulated_user") is not None:
            variables[SIMULATED_VAR] = SimulatedUser.from_dict(raw["simulated_user"]).to_dict()
    except ConversationError as exc:
        key = "simulated_user" if "simulated_user" in str(exc) else "conversation"
        raise where.error(str(exc), *path, key) from None
    return variables, assertions


def parse_case(raw: Any, where: Where, path: tuple) -> SuiteCase:
    if not isinstance(raw, dict):
        raise where.error("each test must be a mapping (description, vars, assert)", *path)
    unknown = set(raw) - TEST_KEYS
    if unknown:
        raise where.error(f"unknown test keys: {', '.join(sorted(unknown))}", *path)
    variables = raw.get("vars") or {}
    if not isinstance(variables, dict):
        raise where.error("vars must be a mapping of names to values", *path, "vars")
    asserts = raw.get("assert") or []
    if not isinstance(asserts, list):
        raise where.error("assert must be a list", *path, "assert")
    threshold = raw.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)):
        raise where.error(f"threshold must be a number, got {threshold!r}", *path, "threshold")
    tags = raw.get("tags") or []
    if not isinstance(tags, list):
        raise where.error("tags must be a list", *path, "tags")
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise where.error("description must be text", *path, "description")
    talk, turn_asserts = conversation_vars(raw, where, path)
    return SuiteCase(
        description=description,
        vars={**variables, **talk},
        assertions=[_assertion(a, where, *path, "assert", i) for i, a in enumerate(asserts)]
        + [_assertion(a, where, *path, "conversation") for a in turn_asserts],
        threshold=threshold,
        tags=[str(t) for t in tags],
    )


EXPECTED_RE = re.compile(
    r"^(?P<type>(?:not-)?[a-z][a-z-]*)(?:\((?P<threshold>[\d.]+)\))?:(?P<value>.*)$", re.S
)
VALUELESS = {"is-json", "contains-json"}


def expected_to_assertion(text: str) -> dict[str, Any]:
    """promptfoo's CSV `__expected`: `type:value`, `type(threshold):value`, or a plain value meaning equals."""
    stripped = text.strip()
    if base_type(stripped)[0] in VALUELESS:
        return {"type": stripped}
    match = EXPECTED_RE.match(stripped)
    if match and (base_type(match["type"])[0] in HANDLERS or match["type"] in UNSUPPORTED_PROMPTFOO):
        out: dict[str, Any] = {"type": match["type"], "value": match["value"].strip()}
        if match["threshold"]:
            out["threshold"] = float(match["threshold"])
        return out
    return {"type": "equals", "value": text}


UNSUPPORTED_PROMPTFOO = {
    "javascript",
    "python",
    "webhook",
    "model-graded-closedqa",
    "factuality",
    "answer-relevance",
    "context-recall",
    "context-relevance",
    "context-faithfulness",
    "select-best",
    "moderation",
    "rouge-n",
    "bleu",
    "classifier",
    "is-sql",
    "is-xml",
    "g-eval",
    "cost-per-token",
}


def load_cases_file(path: Path, where: Where, path_in_suite: tuple = ("tests",)) -> list[SuiteCase]:
    if not path.is_file():
        raise where.error(f"tests file {path} does not exist", *path_in_suite)
    if path.suffix == ".csv":
        return _cases_from_csv(path)
    if path.suffix == ".jsonl":
        return _cases_from_jsonl(path)
    if path.suffix in (".yaml", ".yml", ".json"):
        data, lines = read_yaml(path)
        inner = Where(path.name, lines)
        if not isinstance(data, list):
            raise inner.error("a tests file must hold a list of tests")
        cases = [parse_case(raw, inner, (i,)) for i, raw in enumerate(data)]
        inner.raise_unsupported()
        return cases
    raise where.error(f"tests files must be .csv, .jsonl, .yaml or .json, got {path.name}", *path_in_suite)


# promptfoo's special CSV columns: these carry test logic or metadata; any other `__` column is a typo.
CSV_EXPECTED = re.compile(r"__expected\d*")
CSV_METADATA = ("__metadata:", "__metric")
CSV_UNSUPPORTED = ("__prefix", "__suffix", "__config")


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SuiteError(path.name, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise SuiteError(path.name, f"line {reader.line_num}", f"malformed CSV: {exc}") from None
    if not rows or not any(h.strip() for h in rows[0]):
        raise SuiteError(path.name, "line 1", "the CSV needs a header row of variable names")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        raise SuiteError(path.name, "line 1", f"duplicate columns: {', '.join(dupes)}")
    _check_special_columns(path, header)
    return header, rows[1:]


def _check_special_columns(path: Path, header: list[str]) -> None:
    """Refuse `__` columns that are not promptfoo's (a typo such as `__expectd` would otherwise become a
    variable and the case would silently lose its assertion)."""
    special = [h for h in header if h.startswith("__")]
    unsupported = [h for h in special if h.startswith(CSV_UNSUPPORTED)]
    unknown = [
        h
        for h in special
        if not (
            CSV_EXPECTED.fullmatch(h)
            or h in ("__description", "__threshold")
            or h.startswith(CSV_METADATA)
            or h.startswith(CSV_UNSUPPORTED)
        )
    ]
    if unknown:
        raise SuiteError(
            path.name,
            "line 1",
            f"unknown special columns: {', '.join(unknown)} (known: __expected, "
            "__expected1.., __description, __threshold, __metric, __metadata:<name>)",
        )
    if unsupported:
        raise SuiteError(
            path.name, "line 1", f"promptfoo columns not supported here: {', '.join(unsupported)}"
        )


def _csv_cell(case: SuiteCase, column: str, cell: str, file: str, line: int, unsupported: list[str]) -> None:
    """Apply one CSV cell to the case: a variable, an expectation, the description or the threshold."""
    if CSV_EXPECTED.fullmatch(column):
        if cell.strip():
            assertion = expected_to_assertion(cell)
            if base_type(assertion["type"])[0] not in HANDLERS:
                unsupported.append(f"'{assertion['type']}' at line {line} (column {column})")
            case.assertions.append(assertion)
    elif column == "__description":
        case.description = cell
    elif column == "__threshold":
        try:
            case.threshold = float(cell) if cell.strip() else None
        except ValueError:
            raise SuiteError(
                file, f"line {line} (column __threshold)", f"threshold must be a number, got {cell!r}"
            ) from None
    elif not column.startswith("__"):
        case.vars[column] = cell


def _cases_from_csv(path: Path) -> list[SuiteCase]:
    header, rows = _csv_rows(path)
    cases, unsupported = [], []
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise SuiteError(path.name, f"line {number}", f"expected {len(header)} columns, found {len(row)}")
        case = SuiteCase()
        for column, cell in zip(header, row, strict=True):
            _csv_cell(case, column, cell, path.name, number, unsupported)
        cases.append(case)
    if unsupported:
        collected = Where(path.name)
        collected.unsupported = unsupported
        collected.raise_unsupported()
    return cases


def _cases_from_jsonl(path: Path) -> list[SuiteCase]:
    cases, unsupported = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SuiteError(
                path.name, f"line {number}", f"invalid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        where = Where(path.name, {(): number})
        if isinstance(raw, dict) and "vars" not in raw and "assert" not in raw:
            raw = {"vars": raw}  # a bare object of variables, as promptfoo accepts
        cases.append(parse_case(raw, where, ()))
        unsupported += where.unsupported
    if unsupported:
        collected = Where(path.name)
        collected.unsupported = unsupported
        collected.raise_unsupported()
    return cases
