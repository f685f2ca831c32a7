"""Conversations: a test case that is a chat, not one prompt and one answer.

A case may carry fixed prior turns and the user turns the model answers (`conversation`), or a persona and a goal
for a simulated user who talks with the prompt under test (`simulated_user`). Both are stored in the case's
variables under reserved names, so they travel with the case through the store, exports and copies.

Turns are numbered over the answers the model gives, from 1. In a `conversation`, every user message that is not
followed by an assistant message in the list is answered by the model; a user message followed by an assistant
message is fixed history. The version's rendered messages (its system prompt, any opening user message) come
first. An assertion may name the turn it judges:

- `turn: N` — the model's answer on turn N (a turn that was never reached fails, and says so);
- `turn: all` — every answer must pass (for example "never reveals the canary in any turn");
- `turn: any` — at least one answer must pass;
- `turn: transcript` — the whole conversation as one text, `user: …` / `assistant: …` lines (for example a regex
  that the order number is asked for before a refund is mentioned);
- no turn — the last answer, as for a single-turn case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from prompting.errors import PromptingError

TURNS_VAR = "_turns"  # a case variable: the conversation's messages (fixed history and user turns)
SIMULATED_VAR = "_simulated_user"  # a case variable: persona, goal, max_turns, opening, stop
FOLLOWUPS_VAR = "_followups"  # older shape: user turns sent one by one after the first answer
RESERVED_VARS = (TURNS_VAR, SIMULATED_VAR, FOLLOWUPS_VAR)
SCOPES = ("all", "any", "transcript")
ROLES = ("system", "user", "assistant", "tool")
MAX_TURNS = 16  # answered turns in one conversation, fixed or simulated
MAX_MESSAGES = 64  # messages in a conversation as written
DONE = "[DONE]"  # what the simulated user says when its goal is met or cannot be met
SIMULATOR_TEMPERATURE = (
    0.7  # sampled (greedy small models copy the assistant), seeded per case, repeat and turn
)


class ConversationError(PromptingError):
    pass


@dataclass
class SimulatedUser:
    persona: str
    goal: str
    max_turns: int = 4
    opening: str | None = None  # the user's first message; without it the simulator writes one
    stop: str | None = None  # a regex on the assistant's answer that ends the conversation
    temperature: float = SIMULATOR_TEMPERATURE
    provider: str | None = None  # a provider label; the local default model when unset

    @classmethod
    def from_dict(cls, raw: Any) -> SimulatedUser:
        if not isinstance(raw, dict):
            raise ConversationError("simulated_user must be a mapping with persona and goal")
        unknown = set(raw) - {"persona", "goal", "max_turns", "opening", "stop", "temperature", "provider"}
        if unknown:
            raise ConversationError(f"unknown simulated_user keys: {', '.join(sorted(unknown))}")
        for key in ("persona", "goal"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise ConversationError(f"simulated_user.{key} is missing (a sentence of text)")
        turns = raw.get("max_turns", 4)
        if isinstance(turns, bool) or not isinstance(turns, int) or not 1 <= turns <= MAX_TURNS:
            raise ConversationError(
                f"simulated_user.max_turns must be 1..{MAX_TURNS} (MAX_TURNS), got {turns!r}"
            )
        if raw.get("stop"):
            try:
                re.compile(str(raw["stop"]))
            except re.error as exc:
                raise ConversationError(f"simulated_user.stop is not a valid regex: {exc}") from None
        return cls(
            persona=raw["persona"].strip(),
            goal=raw["goal"].strip(),
            max_turns=turns,
            opening=raw.get("opening") or None,
            stop=raw.get("stop") or None,
            temperature=float(raw.get("temperature", SIMULATOR_TEMPERATURE)),
            provider=raw.get("provider") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        out = {"persona": self.persona, "goal": self.goal, "max_turns": self.max_turns}
        for key in ("opening", "stop", "provider"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.temperature != SIMULATOR_TEMPERATURE:
            out["temperature"] = self.temperature
        return out


def message_of(raw: Any) -> dict[str, Any]:
    """One written turn as an OpenAI message: `{user: text}`, `{assistant: text}` or `{role, content, …}`."""
    if not isinstance(raw, dict):
        raise ConversationError(
            "each turn must be a mapping: {user: text}, {assistant: text} or {role, content}"
        )
    short = [r for r in ("user", "assistant", "system") if r in raw]
    if short:
        if len(short) > 1 or "role" in raw:
            raise ConversationError(
                f"a turn has one role; got {', '.join(short + (['role'] if 'role' in raw else []))}"
            )
        return {"role": short[0], "content": str(raw[short[0]])}
    role = raw.get("role")
    if role not in ROLES:
        raise ConversationError(f"unknown turn role {role!r}; roles are: {', '.join(ROLES)}")
    message = {k: v for k, v in raw.items() if k in ("role", "content", "name", "tool_calls", "tool_call_id")}
    if message.get("content") is None and not message.get("tool_calls"):
        raise ConversationError(f"a {role} turn needs content")
    if role == "tool" and not message.get("tool_call_id"):
        raise ConversationError("a tool turn needs the tool_call_id it answers")
    return message


def parse_turns(raw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(messages, per-turn assertions) from a written conversation. A turn may carry its own `assert` list; those
    assertions judge the model's answer to it and are returned with their `turn` set."""
    if not isinstance(raw, list) or not raw:
        raise ConversationError("conversation must be a non-empty list of turns")
    if len(raw) > MAX_MESSAGES:
        raise ConversationError(f"{len(raw)} turns; at most {MAX_MESSAGES} (MAX_MESSAGES)")
    own = [entry.get("assert") if isinstance(entry, dict) else None for entry in raw]
    messages = [
        message_of({k: v for k, v in entry.items() if k != "assert"} if isinstance(entry, dict) else entry)
        for entry in raw
    ]
    answered = answered_positions(messages)
    if not answered:
        raise ConversationError("the conversation has no user turn for the model to answer")
    if len(answered) > MAX_TURNS:
        raise ConversationError(f"{len(answered)} answered turns; at most {MAX_TURNS} (MAX_TURNS)")
    assertions = []
    for i, listed in enumerate(own):
        if listed is None:
            continue
        if not isinstance(listed, list):
            raise ConversationError(f"turn {i + 1}: assert must be a list")
        if i not in answered:
            raise ConversationError(
                f"turn {i + 1} has assertions but the model does not answer it (a fixed assistant reply "
                "follows it, or it is not a user turn)"
            )
        assertions += [{**a, "turn": answered.index(i) + 1} for a in listed]
    return messages, assertions


def answered_positions(messages: list[dict[str, Any]]) -> list[int]:
    """Positions of the messages the model answers: a user message not followed by an assistant message, a tool
    result not followed by an assistant message or another tool result."""
    out = []
    for i, message in enumerate(messages):
        following = messages[i + 1]["role"] if i + 1 < len(messages) else None
        if message["role"] == "user" and following != "assistant":
            out.append(i)
        elif message["role"] == "tool" and following not in ("assistant", "tool"):
            out.append(i)
    return out


def check_turn(value: Any) -> str | None:
    """None when `value` is a valid assertion turn, else the reason."""
    if value is None or value in SCOPES:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_TURNS:
        return None
    return f"turn must be 1..{MAX_TURNS} or one of {', '.join(SCOPES)}; got {value!r}"


def turn_order(turn: str) -> tuple[bool, int]:
    """How turn keys sort: "1", "2", … "10" by number, the whole-conversation verdict last."""
    return turn == "conversation", int(turn) if turn.isdigit() else 0


def turn_label(turn: str) -> str:
    """How a turn key reads: "turn 2", or "whole conversation" for the all / any / transcript assertions."""
    return "whole conversation" if turn == "conversation" else f"turn {turn}"


def is_conversation(case_vars: dict[str, Any]) -> bool:
    return any(case_vars.get(name) for name in RESERVED_VARS)


def substitute(text: str, variables: dict[str, Any]) -> str:
    """`{{ name }}` replaced by the case's value (promptfoo's convention); no code runs, unknown names stay."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(variables.get(m.group(1), m.group(0))), text)


@dataclass
class Transcript:
    """A conversation as it happened: every message, and where the model's answers are in it."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    answer_positions: list[int] = field(default_factory=list)
    stopped: str = ""  # why a simulated conversation ended
    prefix: int = 0  # how many of the messages the version rendered (its system prompt, an opening message)

    @property
    def answers(self) -> list[str]:
        return [str(self.messages[i].get("content") or "") for i in self.answer_positions]

    def turn_request(self, turn: int) -> list[dict[str, Any]]:
        """The written conversation up to the user message of answered turn `turn` (1-based), without the
        version's rendered messages: the fixed history of a case that replays that turn."""
        return self.messages[self.prefix : self.answer_positions[turn - 1]]

    def text(self) -> str:
        """The conversation as `role: content` lines, system messages left out."""
        return "\n".join(
            f"{m['role']}: {m.get('content') or ''}" for m in self.messages if m["role"] != "system"
        )

    @classmethod
    def from_detail(cls, detail: dict[str, Any]) -> Transcript:
        return cls(
            list(detail.get("conversation") or []),
            list(detail.get("answer_positions") or []),
            detail.get("stopped", ""),
            int(detail.get("prefix", 0)),
        )

    def to_detail(self) -> dict[str, Any]:
        detail = {
            "conversation": self.messages,
            "answer_positions": self.answer_positions,
            "prefix": self.prefix,
        }
        if self.stopped:
            detail["stopped"] = self.stopped
        return detail
