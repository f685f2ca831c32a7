"""A tool-enabled choice streamed as it is generated: content deltas, or one call whose arguments arrive in pieces.

The text is read as it grows. With `required` or a named function it is the call object
`{"name": ..., "arguments": {...}}`; with `auto` it is free text or `<tool_call>` + that object + `</tool_call>`
(both enforced by the grammars of engine/tools.py). Until the text shows which, nothing is sent (with `auto`,
at most the length of `<tool_call>`). A call is announced once its name is complete; then every new piece of its
arguments object is sent as it arrives, up to the object's closing brace (found by `json.JSONDecoder.raw_decode`,
which succeeds exactly when the object is complete), so the deltas join to the arguments' JSON text.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

from engine.tools import CALL_OPEN, ToolPlan

# the call object up to its arguments (which must have begun, so that they start at their opening brace)
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)')
_DECODER = json.JSONDecoder()


@dataclass
class Piece:
    kind: str  # "content" | "call" (a call opens: call_id and name) | "arguments" (more of its arguments)
    text: str = ""
    call_id: str = ""


class CallStream:
    """One choice's text, fed in deltas, read back as content or as one call."""

    def __init__(self, plan: ToolPlan):
        self.plan = plan
        self.text = ""
        self.kind: str | None = "call" if plan.mode in ("required", "named") else None
        self.body_start = 0  # where the call object starts
        self.args_start: int | None = None  # where its arguments start, once the name is known
        self.args_done = False
        self.sent = 0  # how much of the text (content) or of the arguments has been sent
        self.call_id = f"call_{uuid.uuid4().hex[:24]}"

    @property
    def called(self) -> bool:
        """A call whose arguments are complete."""
        return self.args_done

    def feed(self, delta: str) -> list[Piece]:
        self.text += delta
        if self.kind is None:
            self._decide()
        if self.kind == "content":
            return self._content()
        if self.kind == "call":
            return self._call()
        return []

    def finish(self) -> list[Piece]:
        """The end of the choice: text that never became a call is content after all."""
        if self.kind is None or (self.kind == "call" and self.args_start is None):
            self.kind = "content"
            return self._content()
        return []

    def _decide(self) -> None:
        if self.text.startswith(CALL_OPEN):
            self.kind, self.body_start = "call", len(CALL_OPEN)
        elif not CALL_OPEN.startswith(self.text):
            self.kind = "content"

    def _content(self) -> list[Piece]:
        new, self.sent = self.text[self.sent :], len(self.text)
        return [Piece("content", new)] if new else []

    def _call(self) -> list[Piece]:
        pieces = []
        if self.args_start is None:
            head = _HEAD.match(self.text, self.body_start)
            if head is None:
                return []
            self.args_start = self.sent = head.end()
            pieces.append(Piece("call", json.loads(f'"{head.group(1)}"'), self.call_id))
        if not self.args_done:
            try:
                _, end = _DECODER.raw_decode(self.text, self.args_start)
                self.args_done = True
            except json.JSONDecodeError:
                end = len(self.text)  # the object is not complete: all of the text so far is arguments
            if end > self.sent:
                pieces.append(Piece("arguments", self.text[self.sent : end]))
                self.sent = end
        return pieces
