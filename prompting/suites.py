"""Suite files: a promptfoo-compatible subset in YAML, plus CSV and JSONL test files; parse, validate, export.

`load_suite(path)` validates the whole file before returning anything, and every problem names the file and
the line or field (`suite.yaml, line 12 (tests[2].assert[0].type): unknown assertion type 'javascript'`).
Our own options live under one namespaced key, `workbench:` (strategy, delimiter, guardrails, params).
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
from prompting.delimiters import STYLES
from prompting.errors import MissingVariables, PromptingError
from prompting.guardrails import Guardrails
from prompting.providers import ProviderSpec
from prompting.strategies import STRATEGIES
from prompting.templates import Template, library_names, load

TOP_LEVEL_KEYS = {
    "description",
    "prompts",
    "providers",
    "tests",
    "defaultTest",
    "evaluateOptions",
    "workbench",
    "outputPath",
    "sharing",
    "env",
    "repeat",
}
TEST_KEYS = {"description", "vars", "assert", "threshold", "options", "metadata", "tags"}
ASSERT_KEYS = {"type", "value", "threshold", "weight", "metric", "provider"}
WORKBENCH_KEYS = {"strategy", "delimiter", "guardrails", "params", "judge"}


class SuiteError(PromptingError):
    def __init__(self, file: str, where: str, message: str):
        self.file, self.where, self.detail = file, where, message
        super().__init__(f"{file}, {where}: {message}" if where else f"{file}: {message}")


@dataclass
class SuitePrompt:
    label: str
    template: Template
    ref: str  # library name, file:// path or "inline"

    @property
    def library_ref(self) -> str | None:
        return self.ref if self.ref in library_names() else None


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


@dataclass
class Suite:
    path: Path | None
    description: str = ""
    prompts: list[SuitePrompt] = field(default_factory=list)
    providers: list[ProviderSpec] = field(default_factory=list)
    cases: list[SuiteCase] = field(default_factory=list)
    max_concurrency: int | None = None
    repeat: int = 1
    strategy: dict[str, Any] = field(default_factory=lambda: {"name": "single"})
    delimiter: str = "hash"
    guardrails: Guardrails | None = None
    params: dict[str, Any] = field(default_factory=dict)
    judge: str | None = None

    @property
    def name(self) -> str:
        return self.path.stem if self.path else "suite"


# --- locating problems ------------------------------------------------------------------------------------


class _Where:
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


def _read_yaml(path: Path) -> tuple[Any, dict[tuple, int]]:
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


# --- the pieces -------------------------------------------------------------------------------------------


def _resolve(base: Path, ref: str) -> Path:
    target = Path(ref.removeprefix("file://")).expanduser()
    return target if target.is_absolute() else base / target


def _prompt(entry: Any, base: Path, where: _Where, index: int) -> SuitePrompt:
    label = None
    if isinstance(entry, dict):
        label = entry.get("label")
        entry = entry.get("raw") or entry.get("id")
    if not isinstance(entry, str) or not entry.strip():
        raise where.error(
            "each prompt must be a library template name, a file:// path or a prompt string", "prompts", index
        )
    try:
        if entry.startswith("file://"):
            path = _resolve(base, entry)
            if not path.is_file():
                raise where.error(f"prompt file {path} does not exist", "prompts", index)
            if path.suffix == ".json":
                template = Template.from_source(_messages_json_to_source(path, where, index), name=path.stem)
            elif path.suffix in (".j2", ".txt", ".jinja", ".jinja2"):
                template = load(path)
            else:
                raise where.error(
                    f"prompt files must be .j2, .txt or .json, got {path.name}", "prompts", index
                )
            return SuitePrompt(label or template.name, template, entry)
        if entry in library_names():
            return SuitePrompt(label or entry, load(entry), entry)
        template = Template.from_source(entry, name=label or f"prompt{index + 1}")
        return SuitePrompt(label or template.name, template, "inline")
    except SuiteError:
        raise
    except PromptingError as exc:
        raise where.error(str(exc), "prompts", index) from None


def _messages_json_to_source(path: Path, where: _Where, index: int) -> str:
    """A JSON list of chat messages (with {{ vars }}) becomes a template with one message block per entry."""
    try:
        messages = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise where.error(
            f"{path.name} line {exc.lineno}: invalid JSON ({exc.msg})", "prompts", index
        ) from None
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in messages
    ):
        raise where.error(f"{path.name} must be a JSON list of {{role, content}} messages", "prompts", index)
    return "\n".join(f'{{% message "{m["role"]}" %}}{m["content"]}{{% endmessage %}}' for m in messages)


def _assertion(raw: Any, where: _Where, *path: Any) -> dict[str, Any]:
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
    return {k: raw[k] for k in ("type", "value", "threshold", "weight") if k in raw}


def _case(raw: Any, where: _Where, path: tuple) -> SuiteCase:
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
    return SuiteCase(description=description, vars=dict(variables),
                     assertions=[_assertion(a, where, *path, "assert", i) for i, a in enumerate(asserts)],
                     threshold=threshold, tags=[str(t) for t in tags])  # fmt: skip


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


def load_cases_file(path: Path, where: _Where, path_in_suite: tuple = ("tests",)) -> list[SuiteCase]:
    if not path.is_file():
        raise where.error(f"tests file {path} does not exist", *path_in_suite)
    if path.suffix == ".csv":
        return _cases_from_csv(path)
    if path.suffix == ".jsonl":
        return _cases_from_jsonl(path)
    if path.suffix in (".yaml", ".yml", ".json"):
        data, lines = _read_yaml(path)
        inner = _Where(path.name, lines)
        if not isinstance(data, list):
            raise inner.error("a tests file must hold a list of tests")
        cases = [_case(raw, inner, (i,)) for i, raw in enumerate(data)]
        inner.raise_unsupported()
        return cases
    raise where.error(f"tests files must be .csv, .jsonl, .yaml or .json, got {path.name}", *path_in_suite)


def _cases_from_csv(path: Path) -> list[SuiteCase]:
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
    cases, unsupported = [], []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise SuiteError(path.name, f"line {number}", f"expected {len(header)} columns, found {len(row)}")
        case = SuiteCase()
        for column, cell in zip(header, row, strict=True):
            if column.startswith("__expected"):
                if cell.strip():
                    assertion = expected_to_assertion(cell)
                    if base_type(assertion["type"])[0] not in HANDLERS:
                        unsupported.append(f"'{assertion['type']}' at line {number} (column {column})")
                    case.assertions.append(assertion)
            elif column == "__description":
                case.description = cell
            elif column == "__threshold":
                try:
                    case.threshold = float(cell) if cell.strip() else None
                except ValueError:
                    raise SuiteError(
                        path.name,
                        f"line {number} (column __threshold)",
                        f"threshold must be a number, got {cell!r}",
                    ) from None
            elif column.startswith("__"):
                continue  # promptfoo metadata columns (__metadata:..., __prefix, ...) carry no test logic
            else:
                case.vars[column] = cell
        cases.append(case)
    if unsupported:
        collected = _Where(path.name)
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
        where = _Where(path.name, {(): number})
        if isinstance(raw, dict) and "vars" not in raw and "assert" not in raw:
            raw = {"vars": raw}  # a bare object of variables, as promptfoo accepts
        cases.append(_case(raw, where, ()))
        unsupported += where.unsupported
    if unsupported:
        collected = _Where(path.name)
        collected.unsupported = unsupported
        collected.raise_unsupported()
    return cases


def _provider(entry: Any, where: _Where, index: int) -> ProviderSpec:
    config = {}
    if isinstance(entry, dict):
        config = entry.get("config") or {}
        if not isinstance(config, dict):
            raise where.error("config must be a mapping", "providers", index, "config")
        label = entry.get("label")
        entry = entry.get("id")
    else:
        label = None
    if not isinstance(entry, str):
        raise where.error(
            "each provider needs an id such as local:smollm2-135m-instruct or openai:chat:gpt-4o-mini",
            "providers",
            index,
        )
    try:
        spec = ProviderSpec.parse(entry, config)
    except PromptingError as exc:
        raise where.error(str(exc), "providers", index) from None
    if spec.quant:
        from engine.quantize import QuantError, parse_method  # validation only: the name list lives there

        try:
            parse_method(spec.quant)
        except QuantError as exc:
            raise where.error(str(exc), "providers", index, "config", "quant") from None
    if label:
        spec.label = str(label)
    return spec


def _workbench_options(raw: Any, suite: Suite, where: _Where) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise where.error(
            "workbench must be a mapping (strategy, delimiter, guardrails, params)", "workbench"
        )
    unknown = set(raw) - WORKBENCH_KEYS
    if unknown:
        raise where.error(f"unknown workbench keys: {', '.join(sorted(unknown))}", "workbench")
    strategy = raw.get("strategy", {"name": "single"})
    if isinstance(strategy, str):
        strategy = {"name": strategy}
    if not isinstance(strategy, dict) or strategy.get("name") not in STRATEGIES:
        raise where.error(f"strategy must be one of: {', '.join(STRATEGIES)}", "workbench", "strategy")
    suite.strategy = strategy
    delimiter = raw.get("delimiter", "hash")
    if delimiter not in STYLES:
        raise where.error(f"delimiter must be one of: {', '.join(STYLES)}", "workbench", "delimiter")
    suite.delimiter = delimiter
    if raw.get("guardrails") is not None:
        try:
            suite.guardrails = Guardrails.from_dict(raw["guardrails"])
        except (ValueError, AttributeError, TypeError) as exc:
            raise where.error(str(exc), "workbench", "guardrails") from None
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise where.error("params must be a mapping", "workbench", "params")
    suite.params = params
    suite.judge = raw.get("judge")


def load_suite(path: str | Path) -> Suite:
    """Parse and validate a suite file completely; raises SuiteError naming the first problem's place."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(str(path), "", "no such file")
    if path.suffix in (".csv", ".jsonl"):
        cases = load_cases_file(path, _Where(path.name))
        suite = Suite(path=path, cases=cases)
        _check_vars(suite, _Where(path.name), from_file=True)
        return suite
    data, lines = _read_yaml(path)
    where = _Where(path.name, lines)
    if not isinstance(data, dict):
        raise where.error("a suite must be a mapping with prompts, providers and tests")
    unknown = set(data) - TOP_LEVEL_KEYS
    if unknown:
        raise where.error(
            f"unknown keys: {', '.join(sorted(unknown))}; supported: {', '.join(sorted(TOP_LEVEL_KEYS))}"
        )
    suite = Suite(path=path, description=str(data.get("description") or ""))
    prompts = data.get("prompts")
    if prompts is None:
        raise where.error("prompts is missing")
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, list) or not prompts:
        raise where.error("prompts must be a non-empty list", "prompts")
    suite.prompts = [_prompt(p, path.parent, where, i) for i, p in enumerate(prompts)]
    providers = data.get("providers") or []
    if isinstance(providers, str):
        providers = [providers]
    if not isinstance(providers, list):
        raise where.error("providers must be a list", "providers")
    suite.providers = [_provider(p, where, i) for i, p in enumerate(providers)]
    _workbench_options(data.get("workbench"), suite, where)

    default = data.get("defaultTest") or {}
    default_case = _case(default, where, ("defaultTest",)) if default else SuiteCase()
    tests = data.get("tests")
    if tests is None:
        raise where.error("tests is missing")
    raw_cases: list[SuiteCase] = []
    for i, entry in enumerate(tests if isinstance(tests, list) else [tests]):
        if isinstance(entry, str) and entry.startswith("file://"):
            raw_cases += load_cases_file(_resolve(path.parent, entry), where, ("tests", i))
        elif isinstance(entry, str):
            raise where.error("a tests entry must be a test mapping or a file:// path", "tests", i)
        else:
            raw_cases.append(_case(entry, where, ("tests", i) if isinstance(tests, list) else ("tests",)))
    where.raise_unsupported()
    suite.cases = [SuiteCase(description=c.description, vars={**default_case.vars, **c.vars},
                             assertions=[*default_case.assertions, *c.assertions],
                             threshold=c.threshold if c.threshold is not None else default_case.threshold,
                             tags=c.tags) for c in raw_cases]  # fmt: skip

    options = data.get("evaluateOptions") or {}
    if not isinstance(options, dict):
        raise where.error("evaluateOptions must be a mapping", "evaluateOptions")
    for key, target in (("maxConcurrency", "max_concurrency"), ("repeat", "repeat")):
        value = options.get(key, data.get(key) if key == "repeat" else None)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise where.error(f"{key} must be a positive integer, got {value!r}", "evaluateOptions", key)
            setattr(suite, target, value)
    _check_vars(suite, where, from_file=False)
    return suite


def _check_vars(suite: Suite, where: _Where, from_file: bool) -> None:
    """Every test must give every prompt the variables it needs (all missing ones named)."""
    for prompt in suite.prompts:
        for index, case in enumerate(suite.cases):
            try:
                prompt.template.render(case.vars, delimiter=suite.delimiter)
            except MissingVariables as exc:
                label = case.description or f"test {index + 1}"
                raise where.error(
                    f"{label}: missing vars for prompt '{prompt.label}': {', '.join(exc.names)}",
                    "tests",
                    index,
                    "vars",
                ) from None
            except PromptingError as exc:
                raise where.error(
                    f"prompt '{prompt.label}' cannot render this test: {exc}", "tests", index
                ) from None


# --- export -----------------------------------------------------------------------------------------------


def promptfoo_test(case: SuiteCase) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if case.description:
        out["description"] = case.description
    if case.vars:
        out["vars"] = case.vars
    if case.assertions:
        out["assert"] = case.assertions
    if case.threshold is not None:
        out["threshold"] = case.threshold
    if case.tags:
        out["tags"] = case.tags
    return out


def to_promptfoo_yaml(
    description: str,
    prompts: list[str],
    providers: list[ProviderSpec],
    cases: list[SuiteCase],
    workbench: dict[str, Any] | None = None,
) -> str:
    """A promptfooconfig.yaml; providers carry the NAME of their key variable, never a key."""
    provider_entries = []
    for spec in providers:
        if spec.kind == "local":
            provider_entries.append(
                {"id": f"local:{spec.model}", "config": {"quant": spec.quant, **spec.params}}
            )
        else:
            provider_entries.append(
                {
                    "id": f"openai:chat:{spec.model}",
                    "config": {"apiBaseUrl": spec.base_url, "apiKeyEnvar": spec.api_key_env, **spec.params},
                }
            )
    data: dict[str, Any] = {
        "description": description,
        "prompts": prompts,
        "providers": provider_entries,
        "tests": [promptfoo_test(c) for c in cases],
    }
    if workbench:
        data["workbench"] = workbench
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
