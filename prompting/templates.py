"""Sandboxed Jinja templates that render to OpenAI chat messages.

Contract: `render(name_or_path, vars, ...)` returns `[{"role": ..., "content": ...}, ...]`, or raises one of the
domain errors in `prompting.errors`: never a raw Jinja traceback.

Templates use two block tags of our own:
  {% message "user" %}...{% endmessage %}   one chat message; roles come only from the template, never from data
  {% section "Context" %}...{% endsection %} a delimited section; empty or dropped sections vanish
Every `{{ value }}` passes through `finalize`, which neutralises delimiters in the inserted data, so data cannot
end or forge a section. Multi-stage templates branch on the `stage` variable.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.ext import Extension
from jinja2.runtime import missing

from prompting.delimiters import DEFAULT_STYLE, check_style, format_section, neutralize
from prompting.errors import (
    FrontMatterError,
    MissingVariables,
    RenderError,
    TemplateNotFound,
    TemplateSyntax,
    UnsafeTemplate,
)
from prompting.guardrails import Guardrails, apply_guardrails, fold_system_into_user
from prompting.limits import BoundedSandbox, StepCounter, _check_size, _Exceeded, current_limits, exceeded
from prompting.placeholders import Placeholder

LIBRARY_DIR = Path(__file__).resolve().parent.parent / "templates"
ROLES = ("system", "user", "assistant")

_FRONT_MATTER = re.compile(r"\A\s*\{#---\s*\n(?P<yaml>.*?)\n---#\}\n?", re.S)


@dataclass
class _RenderState:
    style: str
    drop_sections: frozenset[str]
    messages: list[dict[str, str]] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)


_state: ContextVar[_RenderState | None] = ContextVar("workbench_render_state", default=None)


class _RecordingUndefined(StrictUndefined):
    """Strict, except that a missing top-level variable is recorded and renders empty.

    That lets one render report *all* missing variables of the stage being rendered instead of the first one.
    Attribute misses and sandbox refusals stay strict (they raise at once).
    """

    def _record(self) -> bool:
        state = _state.get()
        if (
            state is not None
            and self._undefined_obj is missing
            and self._undefined_exception is UndefinedError
        ):
            state.missing.add(self._undefined_name)
            return True
        return False

    def __str__(self) -> str:
        return "" if self._record() else super().__str__()

    def __iter__(self):
        return iter(()) if self._record() else super().__iter__()

    def __bool__(self) -> bool:
        return False if self._record() else super().__bool__()

    def __len__(self) -> int:
        return 0 if self._record() else super().__len__()

    def __getattr__(self, name: str):
        if name[:2] != "__" and self._record():
            return self
        return super().__getattr__(name)

    def __getitem__(self, key):
        return self if self._record() else super().__getitem__(key)


def _finalize(value: Any) -> str:
    """Applied to every `{{ ... }}` output: data is stringified and its delimiters neutralised (a placeholder
    of a template export stays as written)."""
    if value is None:
        return ""
    if isinstance(value, Placeholder):
        return str(value)
    text = str(value)
    state = _state.get()
    return neutralize(text, state.style) if state is not None else text


class _PromptExtension(Extension):
    tags = {"message", "section"}

    def parse(self, parser):
        token = next(parser.stream)
        args = [parser.parse_expression()]
        body = parser.parse_statements((f"name:end{token.value}",), drop_needle=True)
        method = "emit_message" if token.value == "message" else "emit_section"
        return nodes.CallBlock(self.call_method(method, args), [], [], body).set_lineno(token.lineno)

    def emit_message(self, role: str, caller) -> str:
        if role not in ROLES:
            raise RenderError(f"unknown message role '{role}'; roles are: {', '.join(ROLES)}")
        content = caller().strip()
        state = _state.get()
        if content and state is not None:
            state.messages.append({"role": role, "content": content})
        return ""

    def emit_section(self, title: str, caller) -> str:
        state = _state.get()
        body = caller().strip("\n")
        if not body.strip() or (state is not None and title in state.drop_sections):
            return ""
        # A section brings its own trailing blank line, so a dropped section leaves no gap behind.
        return format_section(title, body, state.style if state else DEFAULT_STYLE) + "\n\n"


_env = BoundedSandbox(
    undefined=_RecordingUndefined,
    finalize=_finalize,
    extensions=[_PromptExtension],
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


@dataclass(frozen=True)
class Variable:
    name: str
    description: str = ""
    required: bool = True
    default: Any = None
    example: Any = None
    type: str = "text"  # text | string | list | json: how a form should edit it
    stages: tuple[str, ...] = ()  # empty: needed by every stage
    choices: tuple[str, ...] = ()  # when set, the value must be one of these


@dataclass
class Template:
    name: str
    source: str
    technique: str = ""
    description: str = ""
    variables: list[Variable] = field(default_factory=list)
    strategy: dict[str, Any] = field(default_factory=lambda: {"name": "single"})
    answer_pattern: str | None = None
    # the final line's opening ("Final answer:"): where the provider constrains decoding, the answer is enforced
    # as a grammar (prompting/answers.py); max_tokens is what the technique needs when a request sets none
    answer_prefix: str | None = None
    max_tokens: int | None = None
    stages: list[str] = field(default_factory=list)
    labels: dict[str, list[str]] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    # what a stored version bound (written by `workbench export --format j2`): delimiter, guardrails, values
    bound: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self._compiled = _env.from_string(self.source)
        except TemplateSyntaxError as exc:
            raise TemplateSyntax(self._where(), exc.lineno, exc.message or str(exc)) from None
        except SecurityError as exc:
            raise UnsafeTemplate(self.name, str(exc)) from None

    def _where(self) -> str:
        return self.path.name if self.path else f"<{self.name}>"

    @classmethod
    def from_source(cls, source: str, name: str = "inline", path: Path | None = None) -> Template:
        meta: dict[str, Any] = {}
        match = _FRONT_MATTER.match(source)
        where = path.name if path else f"<{name}>"
        if match:
            try:
                meta = yaml.safe_load(match.group("yaml")) or {}
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line = f"line {mark.line + 2}: " if mark else ""
                raise FrontMatterError(where, f"{line}{getattr(exc, 'problem', None) or exc}") from None
            if not isinstance(meta, dict):
                raise FrontMatterError(where, "expected a mapping of keys such as name, technique, variables")
        try:
            variables = [_parse_variable(v) for v in meta.get("variables") or []]
        except (TypeError, ValueError) as exc:
            raise FrontMatterError(where, f"variables: {exc}") from None
        labels = meta.get("labels") or {}
        if not isinstance(labels, dict):
            raise FrontMatterError(where, "labels must map each class to a list of label words")
        bound = meta.get("bound") or {}
        if not isinstance(bound, dict) or set(bound) - {"delimiter", "guardrails", "values"}:
            raise FrontMatterError(where, "bound must be a mapping of delimiter, guardrails and values")
        max_tokens = meta.get("max_tokens")
        if max_tokens is not None and (
            not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
        ):
            raise FrontMatterError(
                where, f"max_tokens must be a whole number of tokens above 0, not {max_tokens!r}"
            )
        prefix = meta.get("answer_prefix")
        if prefix is not None and (not isinstance(prefix, str) or not prefix.strip() or "\n" in prefix):
            raise FrontMatterError(
                where, "answer_prefix must be the one-line opening of the answer line, e.g. 'Answer:'"
            )
        return cls(
            name=str(meta.get("name") or name),
            source=source,
            technique=str(meta.get("technique", "")),
            description=str(meta.get("description", "")).strip(),
            variables=variables,
            strategy=dict(meta.get("strategy") or {"name": "single"}),
            answer_pattern=meta.get("answer_pattern"),
            answer_prefix=prefix.strip() if prefix else None,
            max_tokens=max_tokens,
            stages=list(meta.get("stages") or []),
            labels={str(k): [str(w) for w in (v if isinstance(v, list) else [v])] for k, v in labels.items()},
            sections=list(meta.get("sections") or []),
            meta=meta,
            path=path,
            bound=bound,
        )

    @property
    def defaults(self) -> dict[str, Any]:
        return {v.name: v.default for v in self.variables if v.default is not None or not v.required}

    def undeclared_variables(self) -> list[str]:
        """Variables the source uses that the front matter does not declare (inline prompts declare none)."""
        from jinja2 import meta

        used = meta.find_undeclared_variables(_env.parse(self.source))
        declared = {v.name for v in self.variables} | {"stage", "delimiter", "labels"}
        return sorted(used - declared)

    def required_variables(self, stage: str | None = None) -> list[str]:
        stage = stage or (self.stages[0] if self.stages else None)
        return [
            v.name
            for v in self.variables
            if v.required and v.default is None and (not v.stages or stage in v.stages)
        ]

    def render(
        self,
        vars: dict[str, Any] | None = None,
        *,
        delimiter: str = DEFAULT_STYLE,
        guardrails: Guardrails | None = None,
        stage: str | None = None,
        fold_system: bool = False,
        drop_sections: tuple[str, ...] | list[str] | set[str] = (),
    ) -> list[dict[str, str]]:
        """Render to chat messages. Raises MissingVariables naming every missing variable at once."""
        check_style(delimiter)
        stage = self._stage(stage)
        context = {**self.defaults, **(vars or {}), "stage": stage, "delimiter": delimiter}
        if self.labels:
            context.setdefault("labels", self.labels)
        self._check_choices(context)
        declared_missing = {n for n in self.required_variables(stage) if context.get(n) in (None, "")}
        state = _RenderState(style=delimiter, drop_sections=frozenset(drop_sections))
        stray = self._execute(context, state)
        missing_names = state.missing | declared_missing
        if missing_names:
            raise MissingVariables(self.name, sorted(missing_names))
        messages = state.messages
        if not messages:
            # A template without {% message %} blocks is one user message (inline promptfoo-style prompts).
            messages = [{"role": "user", "content": stray.strip()}] if stray.strip() else []
        elif stray.strip():
            raise RenderError(
                f"template '{self.name}' has text outside {{% message %}} blocks: {stray.strip()[:60]!r}"
            )
        if guardrails is not None:
            messages = apply_guardrails(messages, guardrails, delimiter)
        if fold_system:
            messages = fold_system_into_user(messages)
        return messages

    def _stage(self, stage: str | None) -> str | None:
        if self.stages:
            stage = stage or self.stages[0]
            if stage not in self.stages:
                raise RenderError(
                    f"template '{self.name}' has no stage '{stage}'; stages: {', '.join(self.stages)}"
                )
            return stage
        if stage:
            raise RenderError(f"template '{self.name}' has no stages; got stage '{stage}'")
        return None

    def _check_choices(self, context: dict[str, Any]) -> None:
        for var in self.variables:
            value = context.get(var.name)
            if var.choices and value is not None and str(value) not in var.choices:
                raise RenderError(
                    f"variable '{var.name}' of template '{self.name}' must be one of: "
                    f"{', '.join(var.choices)}; got {value!r}"
                )

    def _execute(self, context: dict[str, Any], state: _RenderState) -> str:
        """Run the compiled template with `state` active, within the render limits; Jinja's errors become domain
        errors."""
        token = _state.set(state)
        limits = _env.limits = current_limits()
        try:
            with StepCounter(limits):
                out = self._compiled.render(context)
            _check_size(
                len(out) + sum(len(m["content"]) for m in state.messages), limits, "a rendered prompt"
            )
            return out
        except _Exceeded as exc:
            raise exceeded(self.name, exc, limits) from None
        except (SecurityError, OverflowError) as exc:  # the sandbox raises OverflowError for huge ranges
            raise UnsafeTemplate(self.name, str(exc)) from None
        except UndefinedError as exc:
            raise RenderError(f"template '{self.name}': {exc}") from None
        except TemplateSyntaxError as exc:
            raise TemplateSyntax(self._where(), exc.lineno, exc.message or str(exc)) from None
        except (TemplateRuntimeError, TypeError, ValueError) as exc:
            raise RenderError(f"template '{self.name}' failed to render: {exc}") from None
        finally:
            _state.reset(token)


def _parse_variable(raw: Any) -> Variable:
    if isinstance(raw, str):
        return Variable(name=raw)
    if not isinstance(raw, dict) or "name" not in raw:
        raise ValueError(f"each variable needs at least a name, got {raw!r}")
    known = {"name", "description", "required", "default", "example", "type", "stages", "choices"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"variable '{raw['name']}' has unknown keys: {', '.join(sorted(unknown))}")
    return Variable(
        name=str(raw["name"]),
        description=str(raw.get("description", "")),
        required=bool(raw.get("required", True)),
        default=raw.get("default"),
        example=raw.get("example"),
        type=str(raw.get("type", "text")),
        stages=tuple(raw.get("stages") or ()),
        choices=tuple(str(c) for c in raw.get("choices") or ()),
    )


def library_names() -> list[str]:
    return sorted(p.stem for p in LIBRARY_DIR.glob("*.j2"))


def list_templates() -> list[Template]:
    return [load(name) for name in library_names()]


def load(name_or_path: str | Path) -> Template:
    """A library name (`co_star`) or a path to a `.j2`/`.txt` file outside the library."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = path.suffix in (".j2", ".txt", ".jinja", ".jinja2") or "/" in text or "\\" in text
    if looks_like_path:
        if not path.is_file():
            raise TemplateNotFound(text, library_names())
        return Template.from_source(path.read_text(encoding="utf-8"), name=path.stem, path=path)
    library_path = LIBRARY_DIR / f"{text}.j2"
    if not library_path.is_file():
        raise TemplateNotFound(text, library_names())
    return Template.from_source(library_path.read_text(encoding="utf-8"), name=text, path=library_path)


def variables(name_or_path: str | Path) -> list[Variable]:
    return load(name_or_path).variables


def render(
    name_or_path: str | Path, vars: dict[str, Any] | None = None, **options: Any
) -> list[dict[str, str]]:
    """Load and render; a template exported from a stored version brings what it bound (values, delimiter style,
    guardrails), each used unless given here."""
    template = load(name_or_path)
    bound = template.bound
    if options.get("delimiter") is None:
        options["delimiter"] = bound.get("delimiter") or DEFAULT_STYLE
    if options.get("guardrails") is None and bound.get("guardrails"):
        options["guardrails"] = Guardrails.from_dict(bound["guardrails"])
    return template.render({**(bound.get("values") or {}), **(vars or {})}, **options)
