"""Accounting that adds up: for every strategy, a cell's tokens, latency, cost and calls are the sums over every
call the strategy made to the (recording) provider."""

from __future__ import annotations

import pytest

from prompting.providers import Usage
from prompting.runner import CaseSpec, ProviderHandle, Runner, VersionSpec
from prompting.strategies import Prompt
from prompting.templates import load
from tests.fakes import FakeProvider


def reply(messages, params):
    text = messages[-1]["content"]
    if "Facts:" in text or "facts" in text.lower():
        return ["Fact one.", "Fact two.", "Fact three."][: int(params.get("n", 1))]
    if "evaluate" in text.lower() or "Candidate" in text:
        return "likely"
    if "next step" in text.lower() or "Steps so far" in text or "propose" in text.lower():
        return "- step one\n- step two"
    return "Reasoning.\nFinal answer: 4\nAnswer: 4"


CASES = {
    "single": ("zero_shot", {"instruction": "Add.", "input": "2 2"}),
    "self_consistency": ("self_consistency", {"question": "2+2?"}),
    "tree_of_thoughts": ("tree_of_thoughts", {"problem": "Make 4."}),
    "generate_knowledge": ("generate_knowledge", {"question": "Is 4 even?"}),
    "verbalizer": ("verbalizer", {"text": "Great!"}),
}


@pytest.mark.parametrize("strategy", list(CASES))
def test_a_cell_reports_the_sum_of_its_calls(strategy):
    template, variables = CASES[strategy]
    scores = {"positive": -0.5, "great": -1.0, "negative": -2.0, "terrible": -3.0, "neutral": -1.5}
    fake = FakeProvider(reply, scores=scores)
    runner = Runner(
        [VersionSpec(1, Prompt(load(template)))],
        [ProviderHandle(1, fake)],
        [CaseSpec(1, variables, [{"type": "contains", "value": "4"}])],
    )
    results = []
    runner.run(set(), results.append)
    [cell] = results
    assert cell.error is None, cell.error
    total = sum(fake.usages, Usage())
    assert cell.usage.calls == total.calls == len(fake.usages) > 0
    assert (cell.usage.tokens_in, cell.usage.tokens_out) == (total.tokens_in, total.tokens_out)
    assert cell.usage.latency_ms == pytest.approx(total.latency_ms) and cell.usage.cost == pytest.approx(
        total.cost
    )
    if strategy in ("tree_of_thoughts", "generate_knowledge", "verbalizer"):
        assert total.calls > 1  # every call the technique made is counted, not just the first
    if strategy == "self_consistency":  # one request for n = 5 samples: all five answers' tokens count
        assert cell.usage.tokens_out == 5 * len(reply([{"content": ""}], {}).split())
