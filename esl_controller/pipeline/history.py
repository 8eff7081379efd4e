"""Conversation history, ``{{variable}}`` templating and truncation to what was played (pure).

:class:`History` keeps the model's view (OpenAI-style ``{role, content, tool_calls?, tool_call_id?}``) and the
call log's view (Vapi ``messages[]`` items: ``{role: user|bot|system|tool_calls|tool_call_result, message, time,
endTime, secondsFromStart, duration}``). Templates are the Liquid subset Vapi users write: ``{{name}}``,
``{{ customer.number }}`` and ``{{name | default: "there"}}``; the built-ins ``now``, ``date``, ``time`` and
``year`` are filled in from the call's start time (UTC).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

_TEMPLATE = re.compile(
    r"\{\{\s*([A-Za-z_][\w.\-]*)\s*(?:\|\s*default\s*:\s*(\"[^\"]*\"|'[^']*'|[^}\s]+)\s*)?\}\}"
)
_WORD_SPLIT = re.compile(r"\S+")


def builtin_variables(started: datetime | None = None) -> dict[str, str]:
    now = started or datetime.now(timezone.utc)
    return {
        "now": now.strftime("%b %d, %Y, %I:%M %p UTC"),
        "date": now.strftime("%b %d, %Y"),
        "time": now.strftime("%I:%M %p"),
        "year": now.strftime("%Y"),
        "month": now.strftime("%B"),
        "day": now.strftime("%d"),
    }


def _lookup(variables: Mapping[str, Any], dotted: str) -> Any:
    if dotted in variables:
        return variables[dotted]
    value: Any = variables
    for part in dotted.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return None
    return value


def render(text: str, variables: Mapping[str, Any]) -> str:
    """Fill ``{{var}}`` placeholders; unknown variables without a default are left as written."""
    if "{{" not in text:
        return text

    def sub(match: re.Match[str]) -> str:
        value = _lookup(variables, match.group(1))
        if value is None or value == "":
            default = match.group(2)
            if default is None:
                return match.group(0)
            return default.strip("\"'")
        return str(value)

    return _TEMPLATE.sub(sub, text)


def truncate_to_played(
    sentences: Sequence[tuple[str, float]], played_seconds: float
) -> tuple[str, bool]:
    """What the caller heard of a list of ``(sentence, audio seconds)`` after ``played_seconds``.

    Whole sentences that were played are kept; the sentence cut short keeps the share of its words that matches
    the share of its audio that was played. Returns ``(text, truncated)``.
    """
    heard: list[str] = []
    remaining = max(0.0, played_seconds)
    for text, seconds in sentences:
        if remaining >= seconds - 1e-6:
            heard.append(text)
            remaining -= seconds
            continue
        tokens = _WORD_SPLIT.findall(text)
        keep = int(len(tokens) * (remaining / seconds)) if seconds > 0 else 0
        if keep:
            heard.append(" ".join(tokens[:keep]))
        return " ".join(heard).strip(), True
    return " ".join(heard).strip(), False


@dataclass
class _Entry:
    role: str  # system | user | assistant | tool
    content: str
    log: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class History:
    """The conversation so far. ``epoch_ms`` is the call start's wall clock for Vapi's ``time`` fields."""

    def __init__(self, epoch_ms: float, variables: Mapping[str, Any] | None = None) -> None:
        self.epoch_ms = epoch_ms
        self.variables: dict[str, Any] = dict(variables or {})
        self._entries: list[_Entry] = []

    def __len__(self) -> int:
        return len(self._entries)

    def render(self, text: str) -> str:
        return render(text, self.variables)

    # ------------------------------------------------------------------ adding

    def add_system(self, content: str, at: float = 0.0) -> dict[str, Any]:
        text = self.render(content)
        log = {"role": "system", "message": text, "time": self._ms(at), "secondsFromStart": at}
        self._entries.append(_Entry("system", text, log))
        return log

    def replace_system_prompt(self, contents: Sequence[str]) -> None:
        """A handoff: the leading system messages (the previous assistant's prompt) become ``contents``."""
        n = 0
        while n < len(self._entries) and self._entries[n].role == "system":
            n += 1
        fresh = []
        for content in contents:
            text = self.render(content)
            log = {
                "role": "system",
                "message": text,
                "time": self._ms(0.0),
                "secondsFromStart": 0.0,
            }
            fresh.append(_Entry("system", text, log))
        self._entries[:n] = fresh

    def add_user(self, content: str, start: float, end: float) -> dict[str, Any]:
        log = self._spoken("user", content, start, end)
        self._entries.append(_Entry("user", content, log))
        return log

    def add_assistant(self, content: str, start: float, end: float) -> dict[str, Any]:
        log = self._spoken("bot", content, start, end)
        self._entries.append(_Entry("assistant", content, log))
        return log

    def add_tool_calls(
        self, calls: Sequence[Mapping[str, Any]], text: str, at: float
    ) -> dict[str, Any]:
        """``calls`` are OpenAI tool calls ``{id, type: function, function: {name, arguments}}``."""
        log = {
            "role": "tool_calls",
            "toolCalls": [dict(c) for c in calls],
            "message": text,
            "time": self._ms(at),
            "secondsFromStart": at,
        }
        self._entries.append(
            _Entry("assistant", text, log, {"tool_calls": [dict(c) for c in calls]})
        )
        return log

    def add_tool_result(self, call_id: str, name: str, result: str, at: float) -> dict[str, Any]:
        log = {
            "role": "tool_call_result",
            "toolCallId": call_id,
            "name": name,
            "result": result,
            "time": self._ms(at),
            "secondsFromStart": at,
        }
        self._entries.append(_Entry("tool", result, log, {"tool_call_id": call_id}))
        return log

    def add_message(self, role: str, content: str, at: float) -> dict[str, Any]:
        """An ``add-message`` control: system, user or assistant text inserted as is."""
        if role == "system":
            return self.add_system(content, at)
        if role == "user":
            return self.add_user(content, at, at)
        return self.add_assistant(content, at, at)

    def replace_last_assistant(
        self, content: str, end: float | None = None
    ) -> dict[str, Any] | None:
        """Truncate the latest spoken assistant message (barge-in); returns its updated log item."""
        for entry in reversed(self._entries):
            if entry.role == "assistant" and entry.log.get("role") == "bot":
                entry.content = content
                entry.log["message"] = content
                if end is not None:
                    entry.log["endTime"] = self._ms(end)
                    entry.log["duration"] = round(
                        max(0.0, end - float(entry.log["secondsFromStart"])) * 1000.0
                    )
                return entry.log
        return None

    # ------------------------------------------------------------------ reading

    def openai_messages(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for entry in self._entries:
            item: dict[str, Any] = {"role": entry.role, "content": entry.content}
            item.update(entry.extra)
            out.append(item)
        return out

    def log_messages(self) -> list[dict[str, Any]]:
        return [dict(e.log) for e in self._entries]

    def last_user_text(self) -> str:
        for entry in reversed(self._entries):
            if entry.role == "user":
                return entry.content
        return ""

    def transcript(self, assistant_name: str = "AI", user_name: str = "User") -> str:
        lines = []
        for entry in self._entries:
            if entry.log.get("role") == "bot" and entry.content:
                lines.append(f"{assistant_name}: {entry.content}")
            elif entry.log.get("role") == "user" and entry.content:
                lines.append(f"{user_name}: {entry.content}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ helpers

    def _ms(self, at: float) -> int:
        return int(round(self.epoch_ms + at * 1000.0))

    def _spoken(self, role: str, content: str, start: float, end: float) -> dict[str, Any]:
        return {
            "role": role,
            "message": content,
            "time": self._ms(start),
            "endTime": self._ms(end),
            "secondsFromStart": round(start, 3),
            "duration": round(max(0.0, end - start) * 1000.0),
        }
