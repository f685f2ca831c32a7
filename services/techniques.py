"""Techniques run outside a suite: automatic prompt engineering (APE) over a suite's cases, and the Playground's
self-consistency vote and tree-of-thoughts search (answer lines enforced where the provider constrains)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prompting.providers import Provider
from prompting.runner import CaseSpec, ape_ranking, constrains
from prompting.strategies import Prompt, StrategyOutput, run_strategy
from prompting.templates import Template, load
from services.providers import provider_for
from services.suites import load_file, override


def ape(suite_file: str | Path, count: int, provider_id: str | None = None) -> list[dict[str, Any]]:
    """Instructions proposed from the suite's input/output pairs, ranked by zero-shot pass rate on the suite."""
    suite = load_file(suite_file)
    override(suite, Path(suite_file), providers=(provider_id,) if provider_id else ())
    cases = [CaseSpec(i, c.vars, c.assertions, c.threshold, c.description) for i, c in enumerate(suite.cases)]
    provider = provider_for(suite.providers[0])
    return ape_ranking(cases, provider, count, params={"temperature": 0, **suite.params})


def self_consistency(
    provider: Provider, prompt: Prompt | None, text: str, params: dict[str, Any]
) -> Technique:
    """The Playground's vote: the chosen prompt when its template has an answer pattern, else the library's
    self-consistency template around the typed question. n comes from the sidebar when above 1, else from the
    template's strategy."""
    own = prompt is not None and bool(prompt.template.answer_pattern)
    used = prompt if own else Prompt(load("self_consistency"))
    case = {} if own else {"question": text}
    options: dict[str, Any] = {"constrain_answers": constrains(provider)}
    if params.get("n", 1) > 1:
        options["n"] = params["n"]
        source = "n from the sidebar"
    else:
        declared = used.template.strategy.get("n", 5)
        source = f"n = {declared} from the template's strategy; set n above 1 in the sidebar to change it"
    sampling = {k: v for k, v in params.items() if k != "n"}
    out = run_strategy("self_consistency", used, case, provider, _call(provider), sampling, options)
    return Technique(out, used.template, source)


def tree_of_thoughts(
    provider: Provider, prompt: Prompt | None, text: str, params: dict[str, Any]
) -> Technique:
    """The Playground's search: the library tree-of-thoughts template on the chosen prompt's `problem` (or the
    typed text), greedy, with the template's breadth, depth and budget."""
    problem = prompt.variables.get("problem", "") if prompt is not None else text
    used = Prompt(load("tree_of_thoughts"))
    options = {"constrain_answers": constrains(provider)}
    greedy = {**params, "temperature": 0.0}
    out = run_strategy(
        "tree_of_thoughts", used, {"problem": problem}, provider, _call(provider), greedy, options
    )
    return Technique(out, used.template, "")


@dataclass
class Technique:
    """What a technique run produced, with the template it ran and where its sample count came from."""

    output: StrategyOutput
    template: Template
    n_source: str


def _call(provider: Provider):
    return lambda messages, params: provider.chat(messages, **params)
