"""An assistant's tools for one call: the OpenAI ``tools`` list the model sees, and each function name's tool
definition (pure).

Sources, in this order (api-compat.md §3, §4):

1. ``model.tools[]``: inline definitions;
2. ``model.toolIds[]``: stored tools, loaded with ``load_tool(id) -> dict | None`` (the Tool row's body with
   ``id`` and ``type``); an id that does not load is a :class:`ToolsetError` naming it, raised at call start;
3. the assistant's legacy switches: ``endCallFunctionEnabled`` (endCall), ``dialKeypadFunctionEnabled`` (dtmf)
   and ``forwardingPhoneNumber`` (transferCall to that number), unless a tool of that type is already there.

Function names: ``function.name`` when the tool has one (required for ``function`` tools), else the type's
default (``endCall``, ``transferCall``, ``dtmf``, ``handoff``; an apiRequest's ``name``). Names must match
OpenAI's ``^[A-Za-z0-9_-]{1,64}$``. The same stored tool twice, or two identical inline definitions, count once;
two different tools with one name are a :class:`ToolsetError` (the model could not tell them apart). Tool types
the runtime cannot run (``query``, ``sms``, ``mcp``...) are left out of the model's list and reported in
:attr:`Toolset.skipped`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from esl_controller.pipeline.tools.templating import model_schema

SUPPORTED_TYPES = ("function", "apiRequest", "endCall", "transferCall", "dtmf", "handoff")
DEFAULT_NAMES = {
    "endCall": "endCall",
    "transferCall": "transferCall",
    "dtmf": "dtmf",
    "handoff": "handoff",
}
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: keys never sent to a server inside ``toolWithToolCallList`` (sealed secrets)
_SECRET_SERVER_KEYS = ("secret", "secretSealed")

LoadTool = Callable[[str], Mapping[str, Any] | None]


class ToolsetError(ValueError):
    """The assistant's tools cannot be used as configured; the message names the tool or id."""


@dataclass(frozen=True)
class ToolDef:
    """One tool the model may call."""

    name: str
    type: str
    #: the wire-shaped tool body (with ``id`` for stored tools); may hold sealed server secrets
    definition: Mapping[str, Any] = field(hash=False)
    #: the OpenAI ``{"type": "function", "function": {name, description, parameters}}`` entry
    schema: Mapping[str, Any] = field(hash=False)
    #: ``inline``, ``toolIds`` or ``assistant``
    source: str = "inline"
    tool_id: str | None = None

    @property
    def server(self) -> Mapping[str, Any] | None:
        server = self.definition.get("server")
        return server if isinstance(server, Mapping) and server.get("url") else None

    @property
    def messages(self) -> Sequence[Any]:
        return tuple(self.definition.get("messages") or ())

    @property
    def is_async(self) -> bool:
        return bool(self.definition.get("async", False))

    @property
    def destinations(self) -> tuple[Mapping[str, Any], ...]:
        return tuple(d for d in self.definition.get("destinations") or () if isinstance(d, Mapping))

    @property
    def credential_id(self) -> str | None:
        return self.definition.get("credentialId") or None

    def public_definition(self) -> dict[str, Any]:
        """The definition as sent to servers (``toolWithToolCallList``): sealed secrets removed."""
        out = dict(self.definition)
        server = out.get("server")
        if isinstance(server, Mapping):
            out["server"] = {k: v for k, v in server.items() if k not in _SECRET_SERVER_KEYS}
        return out


@dataclass(frozen=True)
class Toolset:
    tools: tuple[ToolDef, ...] = ()
    #: ``(what, reason)`` for tools left out (unsupported types)
    skipped: tuple[tuple[str, str], ...] = ()

    def openai_tools(self) -> list[dict[str, Any]]:
        """The ``tools`` list for the chat-completions request (empty list: no tools)."""
        return [json.loads(json.dumps(t.schema)) for t in self.tools]

    def get(self, name: str) -> ToolDef | None:
        for tool in self.tools:
            if tool.name == name:
                return tool
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tools)

    def definitions(self) -> dict[str, dict[str, Any]]:
        """``{function name: public definition}`` for ``webhooks.messages.tool_calls``."""
        return {t.name: t.public_definition() for t in self.tools}


# ------------------------------------------------------------------------------------ destinations


def destination_key(dest: Mapping[str, Any]) -> str:
    """What the model names a destination by: the number, the SIP URI or the assistant's name (or id)."""
    kind = dest.get("type") or ("sip" if dest.get("sipUri") else "number")
    if kind == "sip":
        return str(dest.get("sipUri") or "")
    if kind == "assistant":
        return str(dest.get("assistantName") or dest.get("assistantId") or "")
    return str(dest.get("number") or "")


def _destination_line(dest: Mapping[str, Any]) -> str:
    key = destination_key(dest)
    desc = str(dest.get("description") or "").strip()
    return f"{key}: {desc}" if desc else key


def _destination_schema(destinations: Sequence[Mapping[str, Any]], what: str) -> dict[str, Any]:
    keys = [k for k in (destination_key(d) for d in destinations) if k]
    prop: dict[str, Any] = {"type": "string", "description": f"The {what} to transfer to."}
    if keys:
        prop["enum"] = keys
    out: dict[str, Any] = {"type": "object", "properties": {"destination": prop}}
    if len(keys) > 1:
        out["required"] = ["destination"]
    return out


# ----------------------------------------------------------------------------------------- schemas


def _builtin_schema(kind: str, tool: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(default description, parameters)`` for the built-in types."""
    dests = [d for d in tool.get("destinations") or () if isinstance(d, Mapping)]
    if kind == "endCall":
        return "End the call. Use it when the conversation is over.", _empty()
    if kind == "dtmf":
        params = {
            "type": "object",
            "properties": {
                "digits": {
                    "type": "string",
                    "description": "The keys to press: digits 0-9, * and #; w waits half a second.",
                }
            },
            "required": ["digits"],
        }
        return "Press keys on the phone keypad (DTMF), e.g. to navigate a phone menu.", params
    if kind == "transferCall":
        lines = "; ".join(_destination_line(d) for d in dests)
        desc = "Transfer the call to a person or another phone line."
        if lines:
            desc += f" Destinations: {lines}."
        return desc, _destination_schema(dests, "destination")
    # handoff
    lines = "; ".join(_destination_line(d) for d in dests)
    desc = "Hand the conversation over to another assistant."
    if lines:
        desc += f" Assistants: {lines}."
    return desc, _destination_schema(dests, "assistant")


def _empty() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


def _sanitize(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", name.strip()).strip("_")
    return cleaned[:64]


def function_name(tool: Mapping[str, Any]) -> str:
    """The name the model calls ``tool`` by ('' when it has none)."""
    fn = tool.get("function")
    if isinstance(fn, Mapping) and fn.get("name"):
        return str(fn["name"])
    kind = str(tool.get("type") or "")
    if kind == "apiRequest":
        return _sanitize(str(tool.get("name") or "")) or "apiRequest"
    return DEFAULT_NAMES.get(kind, "")


def tool_schema(tool: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The OpenAI tools entry for ``tool`` called ``name``."""
    kind = tool.get("type")
    fn = tool.get("function") if isinstance(tool.get("function"), Mapping) else {}
    if kind == "function":
        description, parameters = fn.get("description"), fn.get("parameters") or _empty()
    elif kind == "apiRequest":
        description = fn.get("description") or tool.get("description")
        parameters = fn.get("parameters") or model_schema(tool.get("body"))
    else:
        default_desc, default_params = _builtin_schema(str(kind), tool)
        description = fn.get("description") or default_desc
        parameters = fn.get("parameters") or default_params
    out: dict[str, Any] = {"name": name, "parameters": dict(parameters)}
    if description:
        out["description"] = str(description)
    if fn.get("strict") is not None:
        out["strict"] = bool(fn["strict"])
    return {"type": "function", "function": out}


# ------------------------------------------------------------------------------------------ build


def _as_dict(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, Mapping):
        raise ToolsetError(f"{where}: a tool must be an object")
    return dict(tool)


def _legacy_tools(assistant: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if assistant.get("endCallFunctionEnabled"):
        out.append({"type": "endCall"})
    if assistant.get("dialKeypadFunctionEnabled"):
        out.append({"type": "dtmf"})
    number = assistant.get("forwardingPhoneNumber")
    if number:
        out.append(
            {"type": "transferCall", "destinations": [{"type": "number", "number": str(number)}]}
        )
    return out


def build_toolset(
    model_cfg: Mapping[str, Any] | None,
    load_tool: LoadTool | None = None,
    *,
    assistant: Mapping[str, Any] | None = None,
) -> Toolset:
    """The call's :class:`Toolset` from the assistant's ``model`` block (and the assistant for its legacy
    switches). Raises :class:`ToolsetError` for a missing tool id, a nameless function or a name clash."""
    model = model_cfg or {}
    entries: list[tuple[dict[str, Any], str, str | None]] = []
    for i, tool in enumerate(model.get("tools") or ()):
        entries.append((_as_dict(tool, f"model.tools[{i}]"), f"model.tools[{i}]", None))
    ids = [str(i) for i in model.get("toolIds") or () if i]
    missing = []
    for tool_id in dict.fromkeys(ids):
        loaded = load_tool(tool_id) if load_tool is not None else None
        if loaded is None:
            missing.append(tool_id)
            continue
        body = _as_dict(loaded, f"model.toolIds: {tool_id}")
        body.setdefault("id", tool_id)
        entries.append((body, f"tool {tool_id}", tool_id))
    if missing:
        raise ToolsetError(
            f"model.toolIds: tool{'s' if len(missing) > 1 else ''} {', '.join(missing)} not found"
        )
    present_types = {e[0].get("type") for e in entries}
    for legacy in _legacy_tools(assistant or {}):
        if legacy["type"] not in present_types:
            entries.append((legacy, "assistant", None))

    tools: list[ToolDef] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[str, tuple[ToolDef, str]] = {}
    for body, where, tool_id in entries:
        kind = str(body.get("type") or "")
        if kind not in SUPPORTED_TYPES:
            skipped.append((where, f"tool type {kind or '(none)'!r} is not supported during calls"))
            continue
        name = function_name(body)
        if not name:
            raise ToolsetError(f"{where}: a function tool needs function.name")
        if not NAME_RE.match(name):
            raise ToolsetError(
                f"{where}: function name {name!r} must be 1-64 letters, digits, _ or -"
            )
        source = "toolIds" if tool_id else ("assistant" if where == "assistant" else "inline")
        tool = ToolDef(name, kind, body, tool_schema(body, name), source, tool_id)
        if name in seen:
            other, other_where = seen[name]
            same = (tool_id is not None and tool_id == other.tool_id) or _same(body, other)
            if same:
                continue
            raise ToolsetError(
                f"{where} and {other_where} are both called {name!r}; tool names must be unique"
            )
        seen[name] = (tool, where)
        tools.append(tool)
    return Toolset(tuple(tools), tuple(skipped))


def _same(body: Mapping[str, Any], other: ToolDef) -> bool:
    strip = ("id", "orgId", "createdAt", "updatedAt")
    a = {k: v for k, v in body.items() if k not in strip}
    b = {k: v for k, v in other.definition.items() if k not in strip}
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
