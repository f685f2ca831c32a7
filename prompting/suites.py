"""Suite files: a promptfoo-compatible subset in YAML, plus CSV and JSONL test files; parse, validate, export.

`load_suite(path)` validates the whole file before returning anything, and every problem names the file and
the line or field (`suite.yaml, line 12 (tests[2].assert[0].type): unknown assertion type 'javascript'`).
Our own options live under one namespaced key, `workbench:` (strategy, delimiter, guardrails, params).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import quant_methods
from prompting.checks import listing, render_problems
from prompting.delimiters import STYLES
from prompting.errors import PromptingError
from prompting.guardrails import Guardrails
from prompting.providers import ProviderSpec
from prompting.strategies import STRATEGIES
from prompting.suite_cases import (
    SuiteCase,
    SuiteError,
    Where,
    load_cases_file,
    parse_case,
    read_yaml,
    resolve_path,
)
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
WORKBENCH_KEYS = {"strategy", "delimiter", "guardrails", "params", "judge", "simulator", "prompts"}


@dataclass
class SuitePrompt:
    label: str
    template: Template
    ref: str  # library name, file:// path or "inline"
    # what a version bound (a `bound:` block, or an export's `workbench.prompts`); None: the suite's own
    values: dict[str, Any] = field(default_factory=dict)
    delimiter: str | None = None
    guardrails: Guardrails | None = None
    # this prompt's request fields (`config:`), e.g. response_format, tools
    params: dict[str, Any] = field(default_factory=dict)
    version_id: int | None = None  # a stored version named as NAME@vN or NAME@LABEL

    @property
    def library_ref(self) -> str | None:
        return self.ref if self.ref in library_names() else None


@dataclass
class Suite:
    path: Path | None
    description: str = ""
    prompts: list[SuitePrompt] = field(default_factory=list)
    providers: list[ProviderSpec] = field(default_factory=list)
    cases: list[SuiteCase] = field(default_factory=list)
    max_concurrency: int | None = None
    repeat: int = 1
    strategy: dict[str, Any] = field(default_factory=dict)  # empty: each template's declared strategy
    delimiter: str = "hash"
    guardrails: Guardrails | None = None
    params: dict[str, Any] = field(default_factory=dict)
    judge: str | dict | None = None  # a provider id, or {id, config} like a suite's providers
    simulator: str | dict | None = None  # the simulated users' provider, the same shape

    @property
    def name(self) -> str:
        return self.path.stem if self.path else "suite"


# --- the pieces -------------------------------------------------------------------------------------------


STORED_REF = re.compile(r"[A-Za-z_][\w.-]*@[\w.-]+")  # NAME@vN, NAME@latest, NAME@production


def _prompt(
    entry: Any, base: Path, where: Where, index: int, stored: StoredResolver | None = None
) -> SuitePrompt:
    label, params = None, {}
    if isinstance(entry, dict):
        label, params = entry.get("label"), entry.get("config") or {}
        if not isinstance(params, dict):
            raise where.error(
                "a prompt's config must be a mapping (response_format, tools...)", "prompts", index, "config"
            )
        entry = entry.get("raw") or entry.get("id")
    if not isinstance(entry, str) or not entry.strip():
        raise where.error(
            "each prompt must be a library template name, a file:// path or a prompt string", "prompts", index
        )
    if stored is not None and STORED_REF.fullmatch(entry.strip()):
        try:
            found = stored(entry.strip())
        except (PromptingError, ValueError) as exc:  # the store's lookup errors are ValueErrors
            raise where.error(str(exc), "prompts", index) from None
        found.params = params or found.params
        found.label = label or found.label
        return found
    try:
        if entry.startswith("file://"):
            path = resolve_path(base, entry)
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
            return SuitePrompt(label or template.name, template, entry, params=params)
        if entry in library_names():
            return SuitePrompt(label or entry, load(entry), entry, params=params)
        chat = chat_messages(entry)  # promptfoo's chat format: a JSON list of messages
        template = Template.from_source(
            messages_source(chat) if chat else entry, name=label or f"prompt{index + 1}"
        )
        return SuitePrompt(label or template.name, template, "inline", params=params)
    except SuiteError:
        raise
    except PromptingError as exc:
        raise where.error(str(exc), "prompts", index) from None


def chat_messages(text: str) -> list[dict] | None:
    """The messages of a prompt written as a JSON list of {role, content}, else None."""
    if not text.lstrip().startswith("["):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    ok = (
        isinstance(data, list)
        and data
        and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in data)
    )
    return data if ok else None


def messages_source(messages: list[dict]) -> str:
    """Chat messages (with {{ vars }}) as a template: one message block per message."""
    return "\n".join(f'{{% message "{m["role"]}" %}}{m["content"]}{{% endmessage %}}' for m in messages)


def _messages_json_to_source(path: Path, where: Where, index: int) -> str:
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
    return messages_source(messages)


def _provider(entry: Any, where: Where, index: int) -> ProviderSpec:
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
        try:
            quant_methods.parse(spec.quant)
        except quant_methods.UnknownMethod as exc:
            raise where.error(str(exc), "providers", index, "config", "quant") from None
    if label and str(label).startswith("local:") and spec.kind == "remote":
        # our engine as promptfoo reaches it (openai:chat:MODEL@METHOD at its base URL): ours again
        local = {k: v for k, v in config.items() if k not in ("apiBaseUrl", "apiKeyRequired", "base_url")}
        return ProviderSpec.parse(str(label), local)
    if label:
        spec.label = str(label)
    return spec


def _workbench_options(raw: Any, suite: Suite, where: Where) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise where.error(
            "workbench must be a mapping (strategy, delimiter, guardrails, params)", "workbench"
        )
    unknown = set(raw) - WORKBENCH_KEYS
    if unknown:
        raise where.error(f"unknown workbench keys: {', '.join(sorted(unknown))}", "workbench")
    if "strategy" in raw:  # an override; without one every prompt runs the strategy its template declares
        strategy = raw["strategy"]
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
    for key in ("judge", "simulator"):
        ident = raw.get(key)
        if (
            ident is not None
            and not isinstance(ident, str)
            and not (isinstance(ident, dict) and "id" in ident)
        ):
            raise where.error(
                f"{key} must be a provider id or a mapping with id (and config)", "workbench", key
            )
    suite.judge, suite.simulator = raw.get("judge"), raw.get("simulator")


StoredResolver = Callable[[str], SuitePrompt]


def load_suite(path: str | Path, stored: StoredResolver | None = None) -> Suite:
    """Parse and validate a suite file completely; raises SuiteError naming the first problem's place. `stored`
    resolves prompts written as NAME@vN or NAME@LABEL to stored versions (the caller has the store)."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(str(path), "", "no such file")
    if path.suffix in (".csv", ".jsonl"):
        suite = Suite(path=path, cases=load_cases_file(path, Where(path.name)))
        _check_vars(suite, Where(path.name), from_file=True)
        return suite
    data, lines = read_yaml(path)
    where = Where(path.name, lines)
    if not isinstance(data, dict):
        raise where.error("a suite must be a mapping with prompts, providers and tests")
    unknown = set(data) - TOP_LEVEL_KEYS
    if unknown:
        raise where.error(
            f"unknown keys: {', '.join(sorted(unknown))}; supported: {', '.join(sorted(TOP_LEVEL_KEYS))}"
        )
    suite = Suite(path=path, description=str(data.get("description") or ""))
    prompts = _listed(data, "prompts", where)
    suite.prompts = [_prompt(p, path.parent, where, i, stored) for i, p in enumerate(prompts)]
    exported = (
        (data.get("workbench") or {}).get("prompts") if isinstance(data.get("workbench"), dict) else None
    )
    if exported:  # an export of ours: the templates themselves, not promptfoo's rendered messages
        suite.prompts = [_exported_prompt(p, where, i) for i, p in enumerate(exported)]
    providers = data.get("providers") or []
    providers = [providers] if isinstance(providers, str) else providers
    if not isinstance(providers, list):
        raise where.error("providers must be a list", "providers")
    suite.providers = [_provider(p, where, i) for i, p in enumerate(providers)]
    _workbench_options(data.get("workbench"), suite, where)
    for (
        spec
    ) in suite.providers:  # an export repeats the suite's decoding parameters in each provider's config
        spec.params = {k: v for k, v in spec.params.items() if suite.params.get(k) != v}
    suite.cases = _cases(data, path, where)
    _evaluate_options(data, suite, where)
    _check_vars(suite, where, from_file=False)
    return suite


def _exported_prompt(entry: Any, where: Where, index: int) -> SuitePrompt:
    if not isinstance(entry, dict) or not isinstance(entry.get("source"), str):
        raise where.error("each exported prompt needs its template source", "workbench", "prompts", index)
    label = str(entry.get("label") or f"prompt{index + 1}")
    name = label.rsplit("@v", 1)[0]
    try:
        template = Template.from_source(entry["source"], name=name)
        guardrails = Guardrails.from_dict(entry["guardrails"]) if entry.get("guardrails") else None
    except (PromptingError, ValueError) as exc:
        raise where.error(str(exc), "workbench", "prompts", index) from None
    delimiter = entry.get("delimiter")
    if delimiter is not None and delimiter not in STYLES:
        raise where.error(
            f"delimiter must be one of: {', '.join(STYLES)}", "workbench", "prompts", index, "delimiter"
        )
    ref = name if name in library_names() and load(name).source == template.source else "inline"
    return SuitePrompt(name, template, ref, dict(entry.get("values") or {}), delimiter, guardrails)


def _listed(data: dict, key: str, where: Where) -> list:
    value = data.get(key)
    if value is None:
        raise where.error(f"{key} is missing")
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not value:
        raise where.error(f"{key} must be a non-empty list", key)
    return value


def _cases(data: dict, path: Path, where: Where) -> list[SuiteCase]:
    """The tests (inline or file://), each merged with defaultTest."""
    default = data.get("defaultTest") or {}
    default_case = parse_case(default, where, ("defaultTest",)) if default else SuiteCase()
    tests = data.get("tests")
    if tests is None:
        raise where.error("tests is missing")
    raw_cases: list[SuiteCase] = []
    for i, entry in enumerate(tests if isinstance(tests, list) else [tests]):
        if isinstance(entry, str) and entry.startswith("file://"):
            raw_cases += load_cases_file(resolve_path(path.parent, entry), where, ("tests", i))
        elif isinstance(entry, str):
            raise where.error("a tests entry must be a test mapping or a file:// path", "tests", i)
        else:
            raw_cases.append(
                parse_case(entry, where, ("tests", i) if isinstance(tests, list) else ("tests",))
            )
    where.raise_unsupported()
    return [
        SuiteCase(
            description=c.description,
            vars={**default_case.vars, **c.vars},
            assertions=[*default_case.assertions, *c.assertions],
            threshold=c.threshold if c.threshold is not None else default_case.threshold,
            tags=c.tags,
        )
        for c in raw_cases
    ]


def _evaluate_options(data: dict, suite: Suite, where: Where) -> None:
    options = data.get("evaluateOptions") or {}
    if not isinstance(options, dict):
        raise where.error("evaluateOptions must be a mapping", "evaluateOptions")
    for key, target in (("maxConcurrency", "max_concurrency"), ("repeat", "repeat")):
        value = options.get(key, data.get(key) if key == "repeat" else None)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise where.error(f"{key} must be a positive integer, got {value!r}", "evaluateOptions", key)
            setattr(suite, target, value)


def _check_vars(suite: Suite, where: Where, from_file: bool) -> None:
    """Every test must give every prompt the variables it needs: every missing one of every test is named."""
    prompts = [
        (
            p.label,
            lambda v, p=p: p.template.render(
                {**(p.template.bound.get("values") or {}), **p.values, **v},
                delimiter=p.delimiter or suite.delimiter,
            ),
        )
        for p in suite.prompts
    ]
    problems = render_problems(prompts, [(c.description, c.vars) for c in suite.cases], noun="test")
    if problems:
        raise where.error(listing(problems), "tests", problems[0].case_index, "vars")
