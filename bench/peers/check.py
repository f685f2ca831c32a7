"""One smoke check per client library against a live `workbench serve`, run in the peers' own environment.

`make peers` installs the pinned libraries of bench/peers/requirements.txt into .peers, starts the server and runs
this file there (it imports nothing of the project: it is a client like any other). Each check records pass or
fail with what it saw; lm-eval's per-choice log-likelihoods are written out so that bench/peers/score.py can
compare them with the engine's own continuation scoring. Usage:
`python bench/peers/check.py BASE_URL MODEL OUT.json`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from pydantic import BaseModel, Field

HERE = Path(__file__).resolve().parent
KEY = "peers"


class Person(BaseModel):
    name: str = Field(max_length=40)  # bounded, so that a small model cannot write one name forever
    age: int = Field(ge=0, le=130)


PERSON_TEXT = "Alice Martin is 31 and works as a nurse in Paris."
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 30},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


def openai_sdk(base: str, model: str) -> str:
    import openai

    client = openai.OpenAI(base_url=base, api_key=KEY)
    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=8
    )
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        tool_choice="required",
        stream=True,
    )
    deltas = [
        tc.function.arguments for c in stream if c.choices for tc in c.choices[0].delta.tool_calls or []
    ]
    assert len(deltas) >= 3, f"tool call arrived in {len(deltas)} deltas"
    json.loads("".join(d or "" for d in deltas))
    response = client.responses.create(model=model, input="Say hello", max_output_tokens=8)
    events = [
        e.type
        for e in client.responses.create(model=model, input="Say hello", max_output_tokens=8, stream=True)
    ]
    assert events[0] == "response.created" and events[-1] in ("response.completed", "response.incomplete")
    parsed = client.responses.parse(model=model, input=f"Extract: {PERSON_TEXT}", text_format=Person)
    assert isinstance(parsed.output_parsed, Person)
    return (
        f"chat {chat.choices[0].finish_reason}; streamed tool call in {len(deltas)} argument deltas; "
        f"responses {response.status}, {len(events)} stream events; responses.parse → {parsed.output_parsed!r}"
    )


def instructor_check(base: str, model: str) -> str:
    import instructor
    import openai

    seen = []
    for mode in (instructor.Mode.JSON_SCHEMA, instructor.Mode.TOOLS):
        client = instructor.from_openai(openai.OpenAI(base_url=base, api_key=KEY), mode=mode)
        person = client.chat.completions.create(
            model=model,
            response_model=Person,
            messages=[{"role": "user", "content": f"Extract: {PERSON_TEXT}"}],
            max_retries=0,
        )
        seen.append(f"{mode.value} → {person!r}")
    return "; ".join(seen)


def langchain_check(base: str, model: str) -> str:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=model, base_url=base, api_key=KEY, max_tokens=32, temperature=0)
    text = llm.invoke("Say hello").content
    chunks = list(llm.stream("Say hello"))
    structured = llm.with_structured_output(Person, method="json_schema").invoke(f"Extract: {PERSON_TEXT}")
    called = llm.bind_tools([WEATHER], tool_choice="get_weather").invoke("Weather in Oslo?")
    assert called.tool_calls and called.tool_calls[0]["name"] == "get_weather"
    responses = ChatOpenAI(model=model, base_url=base, api_key=KEY, max_tokens=16, use_responses_api=True)
    via_responses = responses.invoke("Say hello")
    assert via_responses.text
    return (
        f"invoke {len(text)} chars; stream {len(chunks)} chunks; json_schema → {structured!r}; "
        f"bind_tools → {called.tool_calls[0]['args']}; use_responses_api → {len(via_responses.text)} chars"
    )


def inspect_check(base: str, model: str) -> str:
    from inspect_ai import Task, eval
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import includes
    from inspect_ai.solver import generate

    os.environ["WORKBENCH_BASE_URL"], os.environ["WORKBENCH_API_KEY"] = base, KEY
    task = Task(
        dataset=[Sample(input="What is 2 + 2? Answer with a number.", target="4")],
        solver=generate(),
        scorer=includes(),
    )
    with tempfile.TemporaryDirectory() as logs:
        (log,) = eval(
            task, model=f"openai-api/workbench/{model}", log_dir=logs, display="none", max_tokens=16
        )
    assert log.status == "success", log.error
    return f"eval status {log.status}, {log.results.total_samples} sample scored"


def lm_eval_check(base: str, model: str, out: dict) -> str:
    """A local multiple-choice task by loglikelihood, with lm-eval finding our remote tokenizer by itself."""
    import lm_eval
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import check_remote_tokenizer_support

    os.environ["HF_DATASETS_OFFLINE"] = "1"
    # what tokenizer_backend=auto (local-completions' default) decides by: without it, lm-eval downloads one
    assert check_remote_tokenizer_support(f"{base}/completions"), "lm-eval does not find the remote tokenizer"
    os.chdir(HERE / "tasks")  # the task's data file is named relative to it
    args = {"model": model, "base_url": f"{base}/completions", "num_concurrent": 1, "max_retries": 1}
    results = lm_eval.simple_evaluate(
        model="local-completions",
        model_args=args,
        tasks=["workbench_seasons"],
        task_manager=TaskManager(include_path=str(HERE / "tasks")),
        log_samples=True,
    )
    samples = results["samples"]["workbench_seasons"]
    out["lm_eval"] = {
        "acc": results["results"]["workbench_seasons"]["acc,none"],
        "items": [  # each request's arguments are (context, continuation); filtered_resps (loglik, is_greedy)
            {
                "context": s["arguments"][0][0],
                "choices": [argument[1] for argument in s["arguments"]],
                "loglikelihoods": [float(r[0]) for r in s["filtered_resps"]],
                "gold": s["target"],
            }
            for s in samples
        ],
    }
    return (
        f"acc {out['lm_eval']['acc']:.2f} on {len(samples)} questions (tokenizer: remote, found by lm-eval)"
    )


def main() -> int:
    base, model, out_path = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    out: dict = {"checks": []}
    checks = [
        ("openai", lambda: openai_sdk(base, model)),
        ("instructor", lambda: instructor_check(base, model)),
        ("langchain-openai", lambda: langchain_check(base, model)),
        ("inspect-ai", lambda: inspect_check(base, model)),
        ("lm-eval", lambda: lm_eval_check(base, model, out)),
    ]
    from importlib.metadata import version

    for name, check in checks:
        started = time.monotonic()
        try:
            detail, ok = check(), True
        except Exception as exc:  # a failed check is a result to report, not a reason to stop the others
            traceback.print_exc()
            detail, ok = f"{type(exc).__name__}: {exc}"[:300], False
        seconds = time.monotonic() - started
        out["checks"].append(
            {"library": name, "version": version(name), "ok": ok, "detail": detail, "seconds": seconds}
        )
        print(f"{'ok  ' if ok else 'FAIL'} {name} ({seconds:.0f} s): {detail}", flush=True)
    out_path.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0 if all(c["ok"] for c in out["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
