"""Templates for ``apiRequest`` tools: URL, headers and body filled from the call's variables and the tool
call's arguments (pure).

The syntax is the Liquid subset Vapi users write: ``{{name}}``, ``{{ customer.number }}``, and filters
``default: "x"``, ``url_encode``, ``json``, ``upcase``, ``downcase``, ``strip``. A name that is not found
renders as the empty string (as in Liquid).

Safety, because the arguments come from the model (and so, indirectly, from the caller):

* **URL**: the scheme and authority (``https://host:port``) are filled from the call's variables only;
  naming an argument there is a :class:`TemplateError`. Every value put into the path, query or fragment is
  percent-encoded whole (``/``, ``?``, ``#``, ``@``, ``%`` included), so it can never add a path segment,
  start a query or move the host. The rendered URL's host is checked against the rendered authority.
* **Headers**: a value with CR, LF or NUL is a :class:`TemplateError` (no header injection).
* **Body**: a JSON value; strings are filled in as text, never spliced into JSON source.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

_TAG = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.S)
_NAME = re.compile(r"^[A-Za-z_][\w\-]*(?:\.[\w\-]+)*$")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#]*)(.*)$", re.S)
_HOST_VALUE = re.compile(r"^[A-Za-z0-9.\-_:\[\]]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class TemplateError(ValueError):
    """A template that cannot be rendered safely; the message says where."""


def value_text(value: Any) -> str:
    """How a value reads inside text: strings as-is, None empty, booleans lower-case, others as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def lookup(scope: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """``(found, value)`` for ``a.b.c`` (a whole key with dots wins over the path)."""
    if dotted in scope:
        return True, scope[dotted]
    value: Any = scope
    for part in dotted.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list | tuple) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _literal(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _apply_filter(value: Any, found: bool, spec: str) -> tuple[bool, Any]:
    name, _, arg = spec.partition(":")
    name = name.strip()
    if name == "default":
        if not found or value is None or value == "" or value is False:
            return True, _literal(arg)
        return found, value
    if name == "url_encode":
        return found, quote(value_text(value), safe="")
    if name == "json":
        return found, json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if name == "upcase":
        return found, value_text(value).upper()
    if name == "downcase":
        return found, value_text(value).lower()
    if name == "strip":
        return found, value_text(value).strip()
    raise TemplateError(f"unknown template filter {name!r}")


def evaluate(expression: str, scope: Mapping[str, Any]) -> tuple[str, bool, Any]:
    """``(name, found, value)`` for ``name | filter: arg | ...``."""
    parts = _split_pipes(expression)
    name = parts[0].strip()
    if not _NAME.match(name):
        raise TemplateError(f"{{{{ {expression} }}}}: {name!r} is not a variable name")
    found, value = lookup(scope, name)
    for spec in parts[1:]:
        found, value = _apply_filter(value, found, spec)
    return name, found, value


def _split_pipes(expression: str) -> list[str]:
    parts, buf, quote_char = [], [], ""
    for ch in expression:
        if quote_char:
            buf.append(ch)
            if ch == quote_char:
                quote_char = ""
        elif ch in "\"'":
            quote_char = ch
            buf.append(ch)
        elif ch == "|":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return parts


def render(
    template: str,
    scope: Mapping[str, Any],
    escape: Callable[[str], str] | None = None,
) -> str:
    """Fill every ``{{ ... }}`` in ``template``; ``escape`` is applied to each filled-in value."""
    if "{{" not in template:
        return template

    def sub(match: re.Match[str]) -> str:
        _name, _found, value = evaluate(match.group(1), scope)
        text = value_text(value)
        return escape(text) if escape else text

    return _TAG.sub(sub, template)


def names_in(template: str) -> list[str]:
    """The variable names a template refers to (first path segment and whole path)."""
    out = []
    for m in _TAG.finditer(template):
        out.append(_split_pipes(m.group(1))[0].strip())
    return out


def scope_for(variables: Mapping[str, Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Names a tool template can use: the call's variables, with the tool call's arguments over them."""
    return {**dict(variables), **dict(arguments)}


# -------------------------------------------------------------------------------------------- URL


def render_url(template: str, variables: Mapping[str, Any], arguments: Mapping[str, Any]) -> str:
    """The URL with values filled in safely (see the module docstring)."""
    template = template.strip()
    m = _URL.match(template)
    if m is None:
        raise TemplateError("url: must be an absolute http(s) URL")
    scheme, authority, rest = m.groups()
    for name in names_in(scheme + authority):
        head = name.split(".", 1)[0]
        if head in arguments:
            raise TemplateError(
                f"url: the host part may use call variables only, not the argument {head!r}"
            )
    trusted = dict(variables)
    host_part = render(scheme + authority, trusted, escape=_host_value)
    tail = render(rest, scope_for(variables, arguments), escape=lambda t: quote(t, safe=""))
    url = host_part + tail
    try:
        parts = urlsplit(url)
        expected = urlsplit(host_part + "/")
        if (parts.scheme, parts.netloc) != (expected.scheme, expected.netloc) or not parts.hostname:
            raise TemplateError("url: the rendered host does not match the template's host")
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise TemplateError(f"url: {exc}") from None
    if any(c in url for c in "\r\n\t\x00 "):
        raise TemplateError("url: contains whitespace or control characters")
    return url


def _host_value(text: str) -> str:
    if not _HOST_VALUE.match(text):
        raise TemplateError(f"url: {text!r} cannot be part of a host name")
    return text


# ---------------------------------------------------------------------------------------- headers


def _static_values(spec: Any) -> dict[str, Any]:
    """``{name: template}`` from a headers spec: a plain dict, or a JSON schema whose properties carry
    ``value`` (Vapi's form)."""
    if not isinstance(spec, Mapping):
        return {}
    props = spec.get("properties")
    if spec.get("type") == "object" and isinstance(props, Mapping):
        out = {}
        for name, prop in props.items():
            if isinstance(prop, Mapping) and "value" in prop:
                out[str(name)] = prop["value"]
        return out
    return {str(k): v for k, v in spec.items() if not isinstance(v, Mapping | list)}


def render_headers(
    spec: Any, variables: Mapping[str, Any], arguments: Mapping[str, Any]
) -> dict[str, str]:
    """Header values rendered; a bad header name or a value with CR/LF/NUL is a TemplateError."""
    scope = scope_for(variables, arguments)
    out: dict[str, str] = {}
    for name, template in _static_values(spec).items():
        if not _HEADER_NAME.match(name):
            raise TemplateError(f"headers: {name!r} is not a valid header name")
        value = render(value_text(template), scope)
        if any(c in value for c in "\r\n\x00"):
            raise TemplateError(f"headers.{name}: value contains a line break or NUL")
        out[name] = value
    return out


# ------------------------------------------------------------------------------------------- body


def _render_json(value: Any, scope: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        m = _TAG.fullmatch(value.strip())
        if m is not None:  # a whole-value placeholder keeps the variable's JSON type
            _name, found, raw = evaluate(m.group(1), scope)
            return raw if found else None
        return render(value, scope)
    if isinstance(value, Mapping):
        return {str(k): _render_json(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_json(v, scope) for v in value]
    return value


def render_body(
    spec: Any, variables: Mapping[str, Any], arguments: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON body: the model's arguments, with the schema's static ``value``s (rendered) over them.

    ``spec`` is the tool's ``body`` JSON schema (``{type: object, properties: {name: {type, value?}}}``).
    A property with a ``value`` is fixed by the tool's author and the model cannot change it.
    """
    scope = scope_for(variables, arguments)
    body = {str(k): v for k, v in arguments.items()}
    if isinstance(spec, Mapping) and isinstance(spec.get("properties"), Mapping):
        for name, prop in spec["properties"].items():
            if isinstance(prop, Mapping) and "value" in prop:
                body[str(name)] = _render_json(prop["value"], scope)
    return body


def model_schema(spec: Any) -> dict[str, Any]:
    """The parameters schema shown to the model: ``spec`` without the properties it cannot set."""
    if not isinstance(spec, Mapping) or spec.get("type") != "object":
        return {"type": "object", "properties": {}}
    props = spec.get("properties") if isinstance(spec.get("properties"), Mapping) else {}
    kept = {
        str(k): {kk: vv for kk, vv in v.items() if kk != "value"}
        for k, v in props.items()
        if isinstance(v, Mapping) and "value" not in v
    }
    out: dict[str, Any] = {"type": "object", "properties": kept}
    required = [r for r in spec.get("required") or () if r in kept]
    if required:
        out["required"] = required
    if spec.get("description"):
        out["description"] = spec["description"]
    return out
