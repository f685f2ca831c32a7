"""Playing a conversation case and judging it turn by turn (the shapes are in prompting/conversation.py).

`play` sends the written turns one answered turn at a time, each with everything before it; `simulate` lets a
simulated user (a provider given a persona and a goal) write the user turns until its goal is met, it gives up,
the answer matches the case's stop pattern, or `max_turns` is reached. `judge` applies a case's assertions to the
answers by turn. Strategies call these; nothing here touches the store.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from prompting.assertions import AssertionResult, Context, evaluate
from prompting.conversation import (
    DONE,
    FOLLOWUPS_VAR,
    MAX_TURNS,
    SIMULATED_VAR,
    TURNS_VAR,
    ConversationError,
    SimulatedUser,
    Transcript,
    answered_positions,
    message_of,
    substitute,
)
from prompting.providers import Completion, Provider

Ask = Callable[[list[dict[str, Any]]], Completion]  # the model under test, given the conversation so far
AskUser = Callable[[list[dict[str, Any]], int], str]  # the simulated user, given its view and the turn number
SIMULATOR_MAX_TOKENS = 80


def reply_of(completion: Completion) -> dict[str, Any]:
    reply: dict[str, Any] = {"role": "assistant", "content": completion.text}
    if completion.tool_calls and completion.tool_calls[0]:
        reply["tool_calls"] = completion.tool_calls[0]
    return reply


def written_turns(case_vars: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's written turns with its variables filled in (checked again: a case edited as JSON in the grid
    may hold anything)."""
    raw = case_vars.get(TURNS_VAR) or []
    if not isinstance(raw, list):
        raise ConversationError(f"{TURNS_VAR} must be a list of turns, got {type(raw).__name__}")
    turns = [message_of(m) for m in raw]
    if len(answered_positions(turns)) > MAX_TURNS:
        raise ConversationError(
            f"{len(answered_positions(turns))} answered turns; at most {MAX_TURNS} (MAX_TURNS)"
        )
    return [
        {**m, "content": substitute(m["content"], case_vars)}
        if isinstance(m.get("content"), str)
        else dict(m)
        for m in turns
    ]


def followup_turns(case_vars: dict[str, Any], prefix: list[dict[str, Any]]) -> tuple[list, list]:
    """The older `_followups` shape as (prefix, turns): the rendered user message is answered first, then each
    follow-up in order."""
    followups = [{"role": "user", "content": str(t)} for t in case_vars.get(FOLLOWUPS_VAR) or []]
    if len(followups) + 1 > MAX_TURNS:
        raise ConversationError(f"{len(followups)} follow-up turns; at most {MAX_TURNS - 1} (MAX_TURNS)")
    if prefix and prefix[-1]["role"] == "user":
        return prefix[:-1], [prefix[-1], *followups]
    return prefix, followups


def play(
    prefix: list[dict[str, Any]], turns: list[dict[str, Any]], ask: Ask
) -> tuple[Transcript, Completion | None]:
    """The version's rendered messages, then each written turn; the model answers the turns that need one."""
    transcript, last = Transcript(messages=list(prefix), prefix=len(prefix)), None
    answered = set(answered_positions(turns))
    for i, message in enumerate(turns):
        transcript.messages.append(message)
        if i in answered:
            last = ask(list(transcript.messages))
            transcript.messages.append(reply_of(last))
            transcript.answer_positions.append(len(transcript.messages) - 1)
    return transcript, last


def simulate(
    prefix: list[dict[str, Any]], user: SimulatedUser, ask: Ask, ask_user: AskUser
) -> tuple[Transcript, Completion | None]:
    """A conversation written by the simulated user, one answered turn at a time."""
    transcript, last = Transcript(messages=list(prefix), prefix=len(prefix)), None
    text = user.opening or ask_user(simulator_view(user, transcript.messages), 1)
    for turn in range(1, user.max_turns + 1):
        if DONE in text or not text.strip():
            transcript.stopped = "the simulated user ended the conversation"
            break
        transcript.messages.append({"role": "user", "content": text})
        last = ask(list(transcript.messages))
        transcript.messages.append(reply_of(last))
        transcript.answer_positions.append(len(transcript.messages) - 1)
        if user.stop and re.search(user.stop, last.text or ""):
            transcript.stopped = f"the answer matched the stop pattern /{user.stop}/"
            break
        if turn == user.max_turns:
            transcript.stopped = f"max_turns ({user.max_turns}) reached"
            break
        text = ask_user(simulator_view(user, transcript.messages), turn + 1)
    return transcript, last


def simulator_view(user: SimulatedUser, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the simulated user is sent: who it is, what it wants, and the chat so far as a transcript (the prompt
    under test's system messages stay hidden from it); it answers with the customer's next message."""
    chat = "\n".join(
        f"{'customer' if m['role'] == 'user' else 'assistant'}: {m.get('content') or ''}"
        for m in messages
        if m["role"] in ("user", "assistant") and m.get("content")
    )
    task = (
        f"The customer: {user.persona}\nThe customer wants: {user.goal}\n\n"
        + (f"The chat so far:\n{chat}\n\n" if chat else "The chat has not started yet.\n\n")
        + "Write the customer's next message only, one or two sentences. If the customer has what they wanted, "
        f"or it cannot be had, write {DONE}."
    )
    return [
        {
            "role": "system",
            "content": "You write the next message of a customer chatting with a shop's assistant.",
        },
        {"role": "user", "content": task},
    ]


def clean_user_text(text: str) -> str:
    """The simulated user's message: its first line, without a role prefix or wrapping quotes a small model adds."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    first = re.sub(r"^\s*(user|customer|me)\s*:\s*", "", lines[0] if lines else "", flags=re.I)
    return first.strip().strip('"').strip()


def user_simulator(
    case_vars: dict[str, Any],
    factory: Callable[[str | None], Provider] | None,
    case_id: int,
    repeat_index: int,
) -> AskUser | None:
    """The simulated user of a case that has one: its provider (the run's factory picks it by the label the case
    names; the local default model when it names none), seeded per case, repeat and turn."""
    raw = case_vars.get(SIMULATED_VAR)
    if not raw:
        return None
    if factory is None:
        raise ConversationError("this case has a simulated user but the run has no simulator provider")
    user = SimulatedUser.from_dict(raw)
    provider = factory(user.provider)

    def ask_user(view: list[dict[str, Any]], turn: int) -> str:
        seed = simulator_seed(case_id, repeat_index, turn)
        params = {"temperature": user.temperature, "max_tokens": SIMULATOR_MAX_TOKENS, "seed": seed}
        return clean_user_text(provider.chat(view, **params).text)

    return ask_user


def simulator_seed(case_id: int, repeat_index: int, turn: int) -> int:
    """A seed per case, repeat and turn: the same run reproduces its simulated users where the provider honours
    seeds, and repeats draw different ones."""
    digest = hashlib.sha256(f"{case_id}:{repeat_index}:{turn}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def transcript_for(
    case_vars: dict[str, Any], prefix: list[dict[str, Any]], ask: Ask, ask_user: AskUser | None
):
    """Plays the case's conversation: the simulated user's when it has one, else the written turns (a simulated
    user may start from written history: the written turns are played first)."""
    raw = case_vars.get(SIMULATED_VAR)
    if not raw and not case_vars.get(TURNS_VAR):
        transcript, last = play(*followup_turns(case_vars, prefix), ask)
        transcript.prefix = len(prefix)  # the opening user message is the version's, rendered from the case
        return transcript, last
    if not raw:
        return play(prefix, written_turns(case_vars), ask)
    if ask_user is None:
        raise ConversationError("this case has a simulated user but the run has no simulator provider")
    user = SimulatedUser.from_dict(raw)
    history = written_turns(case_vars)
    if history and answered_positions(history):
        raise ConversationError("a simulated user's written history must end with an assistant turn")
    transcript, last = simulate([*prefix, *history], user, ask, ask_user)
    transcript.prefix = len(prefix)  # the written history is the case's own, not the version's
    return transcript, last


# --- judging by turn -----------------------------------------------------------------------------------------


def judge(assertions: list[dict[str, Any]], transcript: Transcript, ctx: Context) -> list[AssertionResult]:
    """Each assertion applied to the answer(s) its `turn` names (see prompting/conversation.py)."""
    answers = transcript.answers
    return [judge_one(a, answers, transcript, ctx) for a in assertions]


def judge_one(
    assertion: dict[str, Any], answers: list[str], transcript: Transcript, ctx: Context
) -> AssertionResult:
    turn = assertion.get("turn")
    plain = {k: v for k, v in assertion.items() if k != "turn"}
    if turn == "transcript":
        result = evaluate(plain, transcript.text(), ctx)
    elif turn in ("all", "any"):
        result = over_answers(plain, answers, ctx, every=turn == "all")
    else:
        index = len(answers) if turn is None else int(turn)
        if not 1 <= index <= len(answers):
            result = evaluate(plain, "", ctx)
            result.passed, result.score = False, 0.0
            result.reason = f"turn {index} was never reached (the conversation has {len(answers)} answers)"
        else:
            result = evaluate(plain, answers[index - 1], ctx)
    result.turn = turn
    return result


def over_answers(assertion: dict[str, Any], answers: list[str], ctx: Context, every: bool) -> AssertionResult:
    per_turn = [evaluate(assertion, answer, ctx) for answer in answers]
    if not per_turn:
        result = evaluate(assertion, "", ctx)
        result.passed, result.score, result.reason = False, 0.0, "the conversation has no answers"
        return result
    pick = min if every else max
    chosen = pick(range(len(per_turn)), key=lambda i: (per_turn[i].passed, per_turn[i].score))
    result = per_turn[chosen]
    result.passed = all(r.passed for r in per_turn) if every else any(r.passed for r in per_turn)
    result.reason = f"turn {chosen + 1}: {result.reason}"
    return result


def turn_verdicts(results: list[AssertionResult]) -> dict[str, bool]:
    """Per numbered turn, whether its assertions passed; `conversation` for the whole-conversation ones."""
    verdicts: dict[str, bool] = {}
    for result in results:
        if result.turn is None:
            continue
        key = "conversation" if isinstance(result.turn, str) else str(result.turn)
        verdicts[key] = verdicts.get(key, True) and result.passed
    return dict(sorted(verdicts.items(), key=lambda kv: (kv[0] == "conversation", kv[0].zfill(3))))
