"""Assertions with promptfoo's names and meaning: one pure handler per type, all the same shape.

A handler takes `(output, value, threshold, ctx)` and returns `Outcome(passed, score, reason)`. Negation by the
`not-` prefix, weights and thresholds are handled once, in `evaluate`, not in every handler. A case's score is
the weighted mean of its assertions' scores; it passes when every assertion passes, or, when the case has a
threshold, when its score reaches it. Reasons say what was expected and what was seen, so a person can act.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prompting.errors import PromptingError


class AssertionConfigError(PromptingError):
    pass


@dataclass
class Outcome:
    passed: bool
    score: float
    reason: str


@dataclass
class Context:
    """What an assertion may look at besides the output."""

    vars: dict[str, Any] = field(default_factory=dict)
    latency_ms: float = 0.0
    cost: float = 0.0
    logprobs: list[float] | None = None  # the output tokens' log-probabilities
    answer_pattern: str | None = None
    answer: str | None = None  # a strategy's final answer (vote winner, verbalizer class), when there is one
    embed: Callable[[list[str]], list[list[float]]] | None = None
    judge: Callable[[str], str] | None = None  # sends a prompt to the judge model, returns its reply
    tools: list[dict[str, Any]] | None = None  # the tools the request offered (OpenAI's shape)
    tool_calls: list[dict[str, Any]] | None = None  # the calls the answer made
    messages: list[dict[str, Any]] | None = None  # the rendered request (system prompt, inserted data)
    delimiter: str | None = None  # the prompt's delimiter style


@dataclass
class AssertionResult:
    type: str
    value: Any
    weight: float
    passed: bool
    score: float
    reason: str
    turn: int | str | None = None  # in a conversation: the turn judged (prompting/conversation.py)


Handler = Callable[[str, Any, float | None, Context], Outcome]
HANDLERS: dict[str, Handler] = {}


def handler(*names: str):
    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = fn
        return fn

    return register


def _short(text: str, limit: int = 80) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _values(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return [v.strip() for v in value.split(",")] if "," in value else [value]
    return [str(value)]


def _bool(passed: bool, reason_pass: str, reason_fail: str) -> Outcome:
    return Outcome(passed, 1.0 if passed else 0.0, reason_pass if passed else reason_fail)


@handler("equals")
def equals(output: str, value: Any, threshold: float | None, ctx: Context) -> Outcome:
    if isinstance(value, dict | list):
        try:
            same = json.loads(output) == value
        except json.JSONDecodeError:
            same = False
    else:
        same = output.strip() == str(value).strip()
    return _bool(
        same,
        "output equals the expected value",
        f"expected exactly {_short(value)!r}, got {_short(output)!r}",
    )


@handler("contains", "icontains")
def contains(
    output: str, value: Any, threshold: float | None, ctx: Context, *, ignore_case: bool = False
) -> Outcome:
    haystack, needle = (output.lower(), str(value).lower()) if ignore_case else (output, str(value))
    return _bool(
        needle in haystack,
        f"output contains {_short(value)!r}",
        f"expected the output to contain {_short(value)!r}; it does not: {_short(output)!r}",
    )


HANDLERS["icontains"] = lambda o, v, t, c: contains(o, v, t, c, ignore_case=True)


def _contains_many(output: str, value: Any, *, any_of: bool, ignore_case: bool) -> Outcome:
    items = _values(value)
    haystack = output.lower() if ignore_case else output
    found = [i for i in items if (i.lower() if ignore_case else i) in haystack]
    missing = [i for i in items if i not in found]
    if any_of:
        return _bool(
            bool(found),
            f"output contains {found[0]!r}" if found else "",
            f"expected any of {items}; none found in {_short(output)!r}",
        )
    return Outcome(
        not missing,
        len(found) / len(items) if items else 1.0,
        "output contains all of them" if not missing else f"missing {missing} in {_short(output)!r}",
    )


HANDLERS["contains-any"] = lambda o, v, t, c: _contains_many(o, v, any_of=True, ignore_case=False)
HANDLERS["icontains-any"] = lambda o, v, t, c: _contains_many(o, v, any_of=True, ignore_case=True)
HANDLERS["contains-all"] = lambda o, v, t, c: _contains_many(o, v, any_of=False, ignore_case=False)
HANDLERS["icontains-all"] = lambda o, v, t, c: _contains_many(o, v, any_of=False, ignore_case=True)


@handler("starts-with")
def starts_with(output: str, value: Any, threshold: float | None, ctx: Context) -> Outcome:
    return _bool(
        output.strip().startswith(str(value)),
        f"output starts with {_short(value)!r}",
        f"expected the output to start with {_short(value)!r}, got {_short(output, 40)!r}",
    )


@handler("regex")
def regex(output: str, value: Any, threshold: float | None, ctx: Context) -> Outcome:
    try:
        pattern = re.compile(str(value))
    except re.error as exc:
        raise AssertionConfigError(f"regex {value!r} is invalid: {exc}") from None
    return _bool(
        pattern.search(output) is not None,
        f"output matches /{value}/",
        f"expected the output to match /{value}/; it does not: {_short(output)!r}",
    )


def _check_schema(data: Any, schema: Any) -> str | None:
    if not schema:
        return None
    import jsonschema

    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise AssertionConfigError(f"the JSON schema is not valid JSON: {exc}") from None
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        return f"JSON does not match the schema at {where}: {exc.message}"
    except jsonschema.SchemaError as exc:
        raise AssertionConfigError(f"the JSON schema is invalid: {exc.message}") from None
    return None


@handler("is-json")
def is_json(output: str, value: Any, threshold: float | None, ctx: Context) -> Outcome:
    try:
        data = json.loads(output.strip())
    except json.JSONDecodeError as exc:
        return Outcome(
            False, 0.0, f"output is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        )
    problem = _check_schema(data, value)
    return _bool(
        problem is None, "output is valid JSON" + (" matching the schema" if value else ""), problem or ""
    )


def extract_json(text: str) -> list[Any]:
    """Every JSON object or array embedded in the text, outermost first."""
    decoder, found, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i] in "{[":
            try:
                obj, end = decoder.raw_decode(text, i)
                found.append(obj)
                i = end
                continue
            except json.JSONDecodeError:
                pass
        i += 1
    return found


@handler("contains-json")
def contains_json(output: str, value: Any, threshold: float | None, ctx: Context) -> Outcome:
    candidates = extract_json(output)
    if not candidates:
        return Outcome(False, 0.0, f"no JSON object found in {_short(output)!r}")
    problems = [_check_schema(c, value) for c in candidates]
    if any(p is None for p in problems):
        return Outcome(True, 1.0, "output contains valid JSON" + (" matching the schema" if value else ""))
    return Outcome(False, 0.0, problems[0])


def levenshtein_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@handler("levenshtein")
def levenshtein(output: str, value: Any, threshold: float | None, ctx: Context) -> Outcome:
    limit = 5 if threshold is None else threshold
    distance = levenshtein_distance(output.strip(), str(value))
    longest = max(len(output.strip()), len(str(value)), 1)
    return Outcome(
        distance <= limit,
        1.0 - distance / longest,
        f"edit distance {distance} {'<=' if distance <= limit else '>'} {limit:g} from {_short(value)!r}",
    )


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


@handler("similar")
def similar(output: str, value: Any, threshold: float | None, ctx: Context) -> Outcome:
    if ctx.embed is None:
        raise AssertionConfigError("the similar assertion needs an embedding model")
    limit = 0.75 if threshold is None else threshold
    references = value if isinstance(value, list) else [value]
    vectors = ctx.embed([output, *map(str, references)])
    best = max(cosine(vectors[0], v) for v in vectors[1:])
    return Outcome(
        best >= limit,
        max(0.0, best),
        f"cosine similarity {best:.3f} {'>=' if best >= limit else '<'} {limit:g}",
    )


RUBRIC_PROMPT = """You are grading an answer against a rubric.

Rubric:
{rubric}

Answer:
{output}

Reply with one JSON object only: {{"reason": "<one sentence>", "score": <0.0 to 1.0>, "pass": <true or false>}}"""


@handler("llm-rubric")
def llm_rubric(output: str, value: Any, threshold: float | None, ctx: Context) -> Outcome:
    if ctx.judge is None:
        raise AssertionConfigError("llm-rubric needs a judge provider")
    reply = ctx.judge(RUBRIC_PROMPT.format(rubric=value, output=output))
    verdicts = [v for v in extract_json(reply) if isinstance(v, dict) and ("pass" in v or "score" in v)]
    if not verdicts:
        return Outcome(False, 0.0, f"the judge did not answer with JSON: {_short(reply)!r}")
    verdict = verdicts[0]
    try:
        score = float(verdict.get("score", 1.0 if verdict.get("pass") else 0.0))
    except (TypeError, ValueError):
        score = 0.0
    passed = bool(verdict.get("pass", score >= 0.5))
    if threshold is not None:
        passed = score >= threshold
    return Outcome(passed, max(0.0, min(1.0, score)), f"judge: {verdict.get('reason', '(no reason given)')}")


def extract_answer(text: str, pattern: str | None) -> str | None:
    """The last match's first group (or the whole match) of the template's answer pattern."""
    if not pattern:
        return None
    matches = list(re.finditer(pattern, text))
    if not matches:
        return None
    last = matches[-1]
    return (last.group(1) if last.groups() else last.group(0)).strip()


def _number(text: str) -> float | None:
    match = re.search(r"-?\d[\d,]*\.?\d*(?:[eE]-?\d+)?", text)
    if not match:
        return None
    try:
        return float(match.group(0).replace(",", ""))
    except ValueError:
        return None


@handler("answer-equals")
def answer_equals(output: str, value: Any, threshold: float | None, ctx: Context) -> Outcome:
    answer = ctx.answer if ctx.answer is not None else extract_answer(output, ctx.answer_pattern)
    if answer is None:
        answer = output.strip().splitlines()[-1] if output.strip() else ""
    expected = str(value).strip()
    a, b = _number(answer), _number(expected)
    if a is not None and b is not None and re.fullmatch(r"[-\d.,eE\s$%]+", expected):
        tolerance = 1e-6 if threshold is None else threshold
        ok = abs(a - b) <= tolerance * max(1.0, abs(b))
        return _bool(
            ok, f"answer {a:g} equals {b:g}", f"expected the answer {b:g}, got {a:g} (from {answer!r})"
        )
    ok = answer.strip().strip(".").lower() == expected.strip(".").lower()
    return _bool(
        ok, f"answer {answer!r} equals {expected!r}", f"expected the answer {expected!r}, got {answer!r}"
    )


@handler("latency")
def latency(output: str, value: Any, threshold: float | None, ctx: Context) -> Outcome:
    limit = threshold if threshold is not None else float(value)
    return _bool(
        ctx.latency_ms <= limit,
        f"latency {ctx.latency_ms:.0f} ms <= {limit:g} ms",
        f"latency {ctx.latency_ms:.0f} ms exceeds {limit:g} ms",
    )


@handler("cost")
def cost(output: str, value: Any, threshold: float | None, ctx: Context) -> Outcome:
    limit = threshold if threshold is not None else float(value)
    return _bool(
        ctx.cost <= limit, f"cost ${ctx.cost:.6f} <= ${limit:g}", f"cost ${ctx.cost:.6f} exceeds ${limit:g}"
    )


@handler("perplexity")
def perplexity(output: str, value: Any, threshold: float | None, ctx: Context) -> Outcome:
    if not ctx.logprobs:
        return Outcome(False, 0.0, "no log-probabilities were returned for this output, so no perplexity")
    ppl = math.exp(-sum(ctx.logprobs) / len(ctx.logprobs))
    limit = threshold if threshold is not None else float(value)
    return Outcome(ppl <= limit, 1.0 / ppl, f"perplexity {ppl:.2f} {'<=' if ppl <= limit else '>'} {limit:g}")


def _calls(output: str, ctx: Context) -> list[dict[str, Any]]:
    """The answer's tool calls: from the response, else parsed from an output that is a JSON list of them."""
    if ctx.tool_calls:
        return ctx.tool_calls
    found = [c for c in extract_json(output) if isinstance(c, list)]
    return [c for c in found[0] if isinstance(c, dict)] if found else []


@handler("is-valid-openai-tools-call")
def valid_tools_call(output: str, value: Any, threshold: float | None, ctx: Context) -> Outcome:
    calls = _calls(output, ctx)
    if not calls:
        return Outcome(False, 0.0, f"no tool call in {_short(output)!r}")
    offered = {
        t["function"]["name"]: t["function"].get("parameters") or {}
        for t in ctx.tools or []
        if "function" in t
    }
    for call in calls:
        function = call.get("function") or {}
        name = function.get("name")
        if offered and name not in offered:
            return Outcome(
                False, 0.0, f"tool call to {name!r}, which the request did not offer ({', '.join(offered)})"
            )
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except json.JSONDecodeError as exc:
            return Outcome(False, 0.0, f"the arguments of {name!r} are not JSON: {exc.msg}")
        problem = _check_schema(arguments, offered.get(name)) if offered else None
        if problem:
            return Outcome(False, 0.0, f"{name}: {problem}")
    return Outcome(
        True, 1.0, f"{len(calls)} valid tool call(s): {', '.join(c['function']['name'] for c in calls)}"
    )


@handler("tool-call-f1")
def tool_call_f1(output: str, value: Any, threshold: float | None, ctx: Context) -> Outcome:
    expected = set(_values(value))
    called = {(c.get("function") or {}).get("name") for c in _calls(output, ctx)} - {None}
    both = len(expected & called)
    precision = both / len(called) if called else 0.0
    recall = both / len(expected) if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    limit = 1.0 if threshold is None else threshold
    return Outcome(
        f1 >= limit, f1, f"tool-call F1 {f1:.2f} (called {sorted(called)}, expected {sorted(expected)})"
    )


from prompting import safety_checks  # noqa: E402, F401 - registers leaks, forged-section, pii-echo, refusal

ASSERTION_TYPES = sorted(HANDLERS)
# Types whose `value` is the thing compared against (suite validation requires one).
NEEDS_VALUE = {
    "equals",
    "contains",
    "icontains",
    "contains-any",
    "contains-all",
    "icontains-any",
    "icontains-all",
    "starts-with",
    "regex",
    "levenshtein",
    "similar",
    "llm-rubric",
    "answer-equals",
    "tool-call-f1",
    "forged-section",
    "pii-echo",
}
# Types measured against a threshold (or a value standing for it).
NEEDS_THRESHOLD = {"latency", "cost", "perplexity"}


def base_type(kind: str) -> tuple[str, bool]:
    return (kind[4:], True) if kind.startswith("not-") else (kind, False)


def check_type(kind: str) -> str | None:
    """None when `kind` (with an optional not- prefix) is known, else the reason."""
    name, _ = base_type(kind)
    return None if name in HANDLERS else f"unknown assertion type '{kind}'"


def evaluate(assertion: dict[str, Any], output: str, ctx: Context) -> AssertionResult:
    kind = str(assertion.get("type", ""))
    name, negated = base_type(kind)
    if name not in HANDLERS:
        raise AssertionConfigError(f"unknown assertion type '{kind}'; known: {', '.join(ASSERTION_TYPES)}")
    value = assertion.get("value")
    if isinstance(value, str) and "{{" in value:
        value = _substitute(value, ctx.vars)
    threshold = assertion.get("threshold")
    outcome = HANDLERS[name](output, value, None if threshold is None else float(threshold), ctx)
    if negated:
        outcome = Outcome(not outcome.passed, 1.0 - outcome.score, f"NOT ({outcome.reason})")
    return AssertionResult(
        kind, value, float(assertion.get("weight", 1.0)), outcome.passed, outcome.score, outcome.reason
    )


def _substitute(text: str, variables: dict[str, Any]) -> str:
    """promptfoo lets assertion values use the case's vars: `{{ name }}`."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(variables.get(m.group(1), m.group(0))), text)


def case_score(results: list[AssertionResult], threshold: float | None = None) -> tuple[bool, float]:
    """(passed, weighted mean score) of one case."""
    if not results:
        return True, 1.0
    total_weight = sum(r.weight for r in results) or 1.0
    score = sum(r.score * r.weight for r in results) / total_weight
    if threshold is not None:
        return score >= threshold, score
    return all(r.passed for r in results), score
