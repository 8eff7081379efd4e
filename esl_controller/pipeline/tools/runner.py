"""Runs the model's tool calls during a call (I/O): server requests, spoken tool messages, call side effects.

One :class:`ToolRunner` per call. :meth:`ToolRunner.run` takes one tool call ``{id, name, arguments}`` and
returns a :class:`ToolOutcome`: the result text for the model (or an error), the tool messages in the order
they were said, system hints for the model, whether the model should be asked again, and the call's side
effects as :class:`~esl_controller.pipeline.ports.PipelineNotice` items (``end-call``, ``transfer``, ``dtmf``,
``handoff``) for the engine to deliver once the spoken messages have been played.

Tool messages are said through the ``speak(message)`` callback the engine passes to :meth:`run`, at the right
moments: request-start before the request (``message.blocking``: the callback returns only once it has been
played; otherwise once queued, and the request runs meanwhile), request-response-delayed while the server is
late, request-complete / request-failed after. Without ``speak`` the messages are only listed in the outcome.

Per type:

* ``function``: the ``tool-calls`` server message (``webhooks.messages.tool_calls``) POSTed to the tool's
  ``server.url``, else the assistant's (then the phone number's) server, authenticated as the server says
  (legacy ``secret`` as ``X-Vapi-Secret``; ``credentialId``: bearer, HMAC or OAuth2 client credentials), with
  ``server.timeoutSeconds`` (default 20). The answer is ``{"results": [{toolCallId, result | error, message?}]}``
  (a bare ``{"result"}`` / ``{"error"}`` is accepted too); a non-2xx status, a timeout or a malformed body is an
  error result, never an exception. ``async: true``: the POST runs in a background greenlet and the model gets
  ``queued`` at once.
* ``apiRequest``: ``method`` to the templated ``url`` with templated ``headers`` and the JSON body built from
  the arguments (``templating``); the response body (bounded) is the result.
* ``endCall``, ``transferCall``, ``dtmf``, ``handoff``: side effects as notices. A transfer goes only to one of
  the tool's ``destinations`` (chosen by the model's ``destination`` argument, or the only one); with none it
  asks the server (``transfer-destination-request``). The model can never dial a number of its own choosing.

Every URL passes ``targets.check_url`` and the connection goes to the checked address (no second DNS lookup);
every request has one deadline over connect, send and read, and reads at most ``max_response_bytes``.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode, urlsplit

import gevent
import gevent.pool

from esl_controller.pipeline.ports import PipelineNotice
from esl_controller.pipeline.tools import messages as tm
from esl_controller.pipeline.tools.messages import ToolMessage
from esl_controller.pipeline.tools.spec import ToolDef, Toolset, destination_key
from esl_controller.pipeline.tools.templating import (
    TemplateError,
    render,
    render_body,
    render_headers,
    render_url,
)
from esl_controller.webhooks import messages as wm
from esl_controller.webhooks.pinned import PinnedConnection, system_resolver
from esl_controller.webhooks.signing import (
    Auth,
    OAuth2Auth,
    SecretHeaderAuth,
    SigningError,
    auth_from_plan,
    sign_request,
)
from esl_controller.webhooks.targets import Resolver, UrlPolicy, check_url, resolve_targets

log = logging.getLogger("esl_controller.pipeline.tools")

Speak = Callable[[ToolMessage], None]
#: ``credential id -> the credential's full body with secrets`` (None when it does not exist)
CredentialLoader = Callable[[str], Mapping[str, Any] | None]
#: a sealed legacy ``server.secretSealed`` token -> the secret
Unseal = Callable[[str], str | None]
#: what ``Conversation(tool_handler=...)`` takes: ``(name, arguments, call_id, tool) -> result text``
ToolHandler = Callable[[str, dict[str, Any], str, Mapping[str, Any] | None], str]

SEALED_KEY = "secretSealed"
QUEUED_RESULT = "queued"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
DTMF_RE = re.compile(r"^[0-9A-Da-d*#wW]{1,64}$")
ANNOUNCE = "destination-message"


@dataclass(frozen=True)
class ToolHttpSettings:
    #: seconds per request when the server / tool sets no ``timeoutSeconds``
    default_timeout: float = 20.0
    #: a tool's ``timeoutSeconds`` is capped here
    max_timeout: float = 120.0
    connect_timeout: float = 5.0
    #: bytes read from a response at most (tool-calls answers and apiRequest bodies)
    max_response_bytes: int = 256 * 1024
    #: characters of a result given to the model at most
    max_result_chars: int = 16_000
    #: async tool requests running at once per call; beyond it a call is answered with an error
    max_async: int = 8
    #: request-start fillers for server tools without a request-start message (() for none)
    fillers: tuple[str, ...] = tm.DEFAULT_FILLERS


@dataclass(frozen=True)
class ToolOutcome:
    """What one tool call did. ``content`` is what goes into the model's ``tool`` message."""

    call_id: str
    name: str
    tool_type: str
    result: str | None = None
    error: str | None = None
    #: the spoken messages, in the order they were said (or are to be said when ``run`` had no ``speak``)
    messages: tuple[ToolMessage, ...] = ()
    #: ``role: system`` tool messages: hints to add to the model's context as system messages
    system_messages: tuple[str, ...] = ()
    #: side effects to deliver (in order) after the spoken messages have been played
    notices: tuple[PipelineNotice, ...] = ()
    #: whether the model should be asked for a reply with this result
    ask_model: bool = True
    #: an async call whose request is still running in the background
    queued: bool = False
    status_code: int | None = None
    latency_ms: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    #: whether ``messages`` were handed to ``speak``
    spoken: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def content(self) -> str:
        return self.result if self.result is not None else f"Error: {self.error}"

    def usage(self) -> dict[str, Any]:
        """A usage record for logs and metrics (``kind: tool``; not priced)."""
        out: dict[str, Any] = {
            "kind": "tool",
            "provider": self.tool_type,
            "model": self.name,
            "request_id": self.call_id,
            "latency_ms": self.latency_ms,
        }
        if self.status_code is not None:
            out["status_code"] = self.status_code
        if self.request_bytes:
            out["request_bytes"] = self.request_bytes
        if self.response_bytes:
            out["response_bytes"] = self.response_bytes
        return out


# --------------------------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class HttpAnswer:
    status: int | None
    body: bytes = b""
    error: str | None = None
    latency_ms: int = 0
    truncated: bool = False


class _Deadline(Exception):
    pass


def http_request(
    method: str,
    url: str,
    body: bytes | None,
    headers: Mapping[str, str],
    *,
    timeout: float,
    settings: ToolHttpSettings,
    policy: UrlPolicy,
    resolver: Resolver,
) -> HttpAnswer:
    """One request, bounded in time (one deadline) and size. Never raises for network or HTTP trouble.
    Redirects are not followed (a 3xx is returned as it is)."""
    started = time.monotonic()

    def done(status: int | None, data: bytes = b"", error: str | None = None, cut: bool = False):
        return HttpAnswer(status, data, error, int((time.monotonic() - started) * 1000), cut)

    decision = check_url(url, policy, resolver)
    if not decision.allowed:
        return done(None, error=f"URL refused: {decision.reason}")
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    limit = settings.max_response_bytes
    conn: PinnedConnection | None = None
    try:
        with gevent.Timeout(timeout, _Deadline()):
            last_error: OSError | None = None
            for address in decision.addresses:
                conn = PinnedConnection(
                    decision.host,
                    decision.port,
                    address,
                    min(timeout, settings.connect_timeout),
                    tls=parts.scheme.lower() == "https",
                )
                try:
                    conn.connect()
                    break
                except OSError as exc:
                    conn.close()
                    conn, last_error = None, exc
            if conn is None:
                raise last_error or ConnectionError("no address to connect to")
            conn.sock.settimeout(timeout)
            conn.request(method, path, body=body, headers=dict(headers))
            resp = conn.getresponse()
            data = resp.read(limit + 1)
            return done(resp.status, data[:limit], cut=len(data) > limit)
    except _Deadline:
        return done(None, error=f"timed out after {timeout:g} s")
    except TimeoutError:
        return done(None, error=f"timed out after {timeout:g} s")
    except ConnectionRefusedError:
        return done(None, error="connection refused")
    except http.client.HTTPException as exc:
        return done(None, error=f"bad HTTP response: {type(exc).__name__}")
    except ssl.SSLError as exc:
        return done(None, error=f"TLS error: {exc}")
    except OSError as exc:
        return done(None, error=f"network error: {exc}")
    finally:
        if conn is not None:
            conn.close()


# ------------------------------------------------------------------------------------ answer parsing


def stringify(value: Any) -> str:
    """A result as text for the model: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def parse_tool_answer(
    status: int | None, body: bytes, call_id: str
) -> tuple[str | None, str | None, Any]:
    """``(result, error, message)`` from a ``tool-calls`` answer; exactly one of result/error is set."""
    if status is None:
        return None, "no response from the tool server", None
    if not 200 <= status < 300:
        return None, f"the tool server answered HTTP {status}", None
    try:
        answer = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "the tool server's answer is not valid JSON", None
    if not isinstance(answer, Mapping):
        return None, "the tool server's answer is not a JSON object", None
    item: Mapping[str, Any] | None = None
    results = answer.get("results")
    if isinstance(results, list):
        items = [r for r in results if isinstance(r, Mapping)]
        item = next((r for r in items if r.get("toolCallId") == call_id), None)
        if item is None:
            anonymous = [r for r in items if not r.get("toolCallId")]
            item = anonymous[0] if len(items) == 1 and anonymous else None
        if item is None:
            return None, "the tool server's answer has no result for this tool call", None
    elif "result" in answer or "error" in answer:
        item = answer
    else:
        return None, "the tool server's answer has neither results nor result", None
    message = item.get("message")
    if item.get("error") not in (None, ""):
        return None, stringify(item["error"]), message
    if "result" not in item:
        return None, "the tool server's result is missing", message
    return stringify(item["result"]), None, message


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " [truncated]"


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, str) and raw.strip():
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _public(resource: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if not resource:
        return resource
    server = resource.get("server")
    if isinstance(server, Mapping) and SEALED_KEY in server:
        return {**resource, "server": {k: v for k, v in server.items() if k != SEALED_KEY}}
    return resource


# ---------------------------------------------------------------------------------------- the runner


class _Voice:
    """Says tool messages through the engine's callback and remembers what was said."""

    def __init__(self, speak: Speak | None, call_id: str) -> None:
        self.speak, self.call_id = speak, call_id
        self.said: list[ToolMessage] = []
        self.system: list[str] = []

    def say(self, msg: ToolMessage | None) -> None:
        if msg is None:
            return
        if msg.role == "system":
            if msg.content.strip():
                self.system.append(msg.content)
            return
        if not msg.spoken:
            return
        self.said.append(msg)
        if self.speak is None:
            return
        try:
            self.speak(msg)
        except gevent.GreenletExit:
            raise
        except Exception:  # noqa: BLE001 - a failed filler must not fail the tool call
            log.warning("tool call %s: saying a %s message failed", self.call_id, msg.type)


@dataclass(frozen=True)
class _Request:
    url: str
    method: str = "POST"
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 20.0


class ToolRunner:
    """Runs one call's tool calls. Build it when the call starts; :meth:`close` it when the call ends."""

    def __init__(
        self,
        context: wm.MessageContext,
        toolset: Toolset,
        settings: ToolHttpSettings | None = None,
        *,
        credentials: CredentialLoader | None = None,
        url_policy: UrlPolicy | None = None,
        resolver: Resolver = system_resolver,
        unseal: Unseal | None = None,
        assistant: Mapping[str, Any] | None = None,
        phone_number: Mapping[str, Any] | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> None:
        """``context``: the envelope fields of server messages (public: no secrets). ``assistant`` /
        ``phone_number``: the stored bodies with their sealed ``server.secretSealed`` (default: the
        context's). ``variables``: the call's template variables (``variableValues`` and built-ins)."""
        self.context = replace(
            context,
            assistant=_public(context.assistant),
            phone_number=_public(context.phone_number),
        )
        self.toolset = toolset
        self.settings = settings or ToolHttpSettings()
        self.credentials = credentials
        self.url_policy = url_policy or UrlPolicy()
        self.resolver = resolver
        self.unseal = unseal
        self.assistant = assistant if assistant is not None else context.assistant
        self.phone_number = phone_number if phone_number is not None else context.phone_number
        self.variables = dict(variables or {})
        self._async = gevent.pool.Pool(self.settings.max_async)
        self._tokens: dict[tuple, tuple[str, float]] = {}
        #: outcomes of finished async requests (for logs), newest last, bounded
        self.async_results: list[tuple[str, str | None, str | None]] = []

    # ------------------------------------------------------------------ public

    def openai_tools(self) -> list[dict[str, Any]]:
        return self.toolset.openai_tools()

    def run(
        self,
        call: Mapping[str, Any],
        speak: Speak | None = None,
        *,
        variables: Mapping[str, Any] | None = None,
    ) -> ToolOutcome:
        """Carry out one tool call ``{id, name, arguments}`` (arguments: JSON text or an object)."""
        call_id = str(call.get("id") or "")
        name = str(call.get("name") or (call.get("function") or {}).get("name") or "")
        raw_args = call.get("arguments", (call.get("function") or {}).get("arguments"))
        args = _arguments(raw_args)
        scope_vars = {**self.variables, **dict(variables or {})}
        voice = _Voice(speak, call_id)
        base = ToolOutcome(call_id, name, "")
        tool = self.toolset.get(name)
        if tool is None:
            log.warning("tool call %s: no tool called %r", call_id, name)
            return replace(base, error=f"tool {name} is not available")
        base = replace(base, tool_type=tool.type)
        msgs = tm.parse_messages(tool.messages)
        try:
            if tool.type == "function":
                out = self._function(tool, base, raw_args, args, msgs, voice, scope_vars)
            elif tool.type == "apiRequest":
                out = self._api_request(tool, base, args, msgs, voice, scope_vars)
            elif tool.type == "endCall":
                out = self._end_call(base, args, msgs, voice)
            elif tool.type == "dtmf":
                out = self._dtmf(base, args, msgs, voice)
            else:
                out = self._transfer(tool, base, args, msgs, voice, scope_vars)
        except gevent.GreenletExit:
            raise
        except Exception:  # noqa: BLE001 - a bug in one tool call must not end the turn
            log.exception("tool call %s (%s) failed", call_id, name)
            voice.say(tm.result_message(msgs, args, failed=True))
            out = replace(base, error="the tool failed")
        return replace(
            out,
            messages=tuple(voice.said),
            system_messages=tuple(voice.system),
            spoken=speak is not None,
        )

    def handler(self, speak: Speak | None = None) -> ToolHandler:
        """An adapter for ``Conversation(tool_handler=...)``: returns only the result text."""

        def handle(
            name: str, arguments: dict[str, Any], call_id: str, tool: Mapping[str, Any] | None
        ) -> str:
            return self.run({"id": call_id, "name": name, "arguments": arguments}, speak).content

        return handle

    @property
    def pending(self) -> int:
        """Async tool requests still running."""
        return len(self._async)

    def close(self, timeout: float = 2.0) -> None:
        """The call ended: give async requests ``timeout`` seconds, then kill them."""
        self._async.join(timeout=timeout)
        self._async.kill(block=True, timeout=timeout)

    # ------------------------------------------------------------------ function

    def _function(
        self,
        tool: ToolDef,
        base: ToolOutcome,
        raw_args: Any,
        args: dict[str, Any],
        msgs: Sequence[ToolMessage],
        voice: _Voice,
        variables: Mapping[str, Any],
    ) -> ToolOutcome:
        sent: Any = raw_args if isinstance(raw_args, str) else args
        static = self._static_parameters(tool, variables)
        if static:
            sent = {**args, **static}
        payload = wm.tool_calls(
            self.context,
            [{"id": base.call_id, "name": base.name, "arguments": sent}],
            {base.name: tool.public_definition()},
        )
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        request, problem = self._server_request("tool-calls", tool, body, base.call_id)
        if request is None:
            log.warning("tool call %s (%s): %s", base.call_id, base.name, problem)
            return self._finish(base, None, problem, None, msgs, args, voice, HttpAnswer(None))
        if tool.is_async:
            return self._run_async(tool, base, request, msgs, args, voice)
        start = tm.start_message(msgs, args, call_id=base.call_id, fillers=self.settings.fillers)
        answer = self._send_with_messages(request, start, msgs, args, voice)
        result, error, server_msg = parse_tool_answer(answer.status, answer.body, base.call_id)
        if answer.error:
            error = answer.error
        log.info(
            "tool call %s (%s): HTTP %s in %d ms%s",
            base.call_id, base.name, answer.status, answer.latency_ms,
            f" ({error})" if error else "",
        )  # fmt: skip
        return self._finish(base, result, error, server_msg, msgs, args, voice, answer, request)

    def _static_parameters(self, tool: ToolDef, variables: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in tool.definition.get("parameters") or ():
            if isinstance(item, Mapping) and item.get("key"):
                value = item.get("value")
                out[str(item["key"])] = (
                    render(value, variables) if isinstance(value, str) else value
                )
        return out

    def _run_async(
        self,
        tool: ToolDef,
        base: ToolOutcome,
        request: _Request,
        msgs: Sequence[ToolMessage],
        args: dict[str, Any],
        voice: _Voice,
    ) -> ToolOutcome:
        if self._async.full():
            error = f"too many async tool calls running (at most {self.settings.max_async})"
            return self._finish(base, None, error, None, msgs, args, voice, HttpAnswer(None))
        self._async.spawn(self._async_send, base.call_id, base.name, request)
        final = tm.result_message(msgs, args, failed=False)
        voice.say(final)
        return self._after_result(
            replace(
                base, result=QUEUED_RESULT, queued=True, request_bytes=len(request.body or b"")
            ),
            final,
        )

    def _async_send(self, call_id: str, name: str, request: _Request) -> None:
        answer = self._send(request)
        result, error, _msg = parse_tool_answer(answer.status, answer.body, call_id)
        error = answer.error or error
        log.info("async tool call %s (%s): HTTP %s %s", call_id, name, answer.status, error or "ok")
        self.async_results.append((call_id, result, error))
        del self.async_results[:-50]

    # ------------------------------------------------------------------ apiRequest

    def _api_request(
        self,
        tool: ToolDef,
        base: ToolOutcome,
        args: dict[str, Any],
        msgs: Sequence[ToolMessage],
        voice: _Voice,
        variables: Mapping[str, Any],
    ) -> ToolOutcome:
        d = tool.definition
        method = str(d.get("method") or "POST").upper()
        try:
            if method not in METHODS:
                raise TemplateError(f"method {method!r} is not one of {', '.join(METHODS)}")
            url = render_url(str(d.get("url") or ""), variables, args)
            headers = render_headers(d.get("headers"), variables, args)
            body = None
            if method in ("POST", "PUT", "PATCH"):
                data = render_body(d.get("body"), variables, args)
                body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
                headers.setdefault("Content-Type", "application/json")
            auths, cred_headers = self._credential_auths(tool.credential_id)
            headers.update(cred_headers)
            signed = self._sign(body or b"", url, method, auths, headers, base.call_id)
        except (TemplateError, SigningError, LookupError) as exc:
            log.warning("tool call %s (%s): %s", base.call_id, base.name, exc)
            error = f"the request could not be built: {exc}"
            return self._finish(base, None, error, None, msgs, args, voice, HttpAnswer(None))
        request = _Request(url, method, body, signed, self._timeout(d.get("timeoutSeconds")))
        start = tm.start_message(msgs, args, call_id=base.call_id, fillers=self.settings.fillers)
        answer = self._send_with_messages(request, start, msgs, args, voice)
        text = answer.body.decode("utf-8", "replace")
        if answer.truncated:
            text += " [truncated]"
        if answer.error:
            result, error = None, answer.error
        elif answer.status is not None and 200 <= answer.status < 300:
            result, error = text, None
        else:
            result, error = None, f"HTTP {answer.status}: {text[:500]}"
        log.info(
            "tool call %s (%s): %s HTTP %s in %d ms",
            base.call_id, base.name, method, answer.status, answer.latency_ms,
        )  # fmt: skip
        return self._finish(base, result, error, None, msgs, args, voice, answer, request)

    # ------------------------------------------------------------------ built-ins

    def _end_call(
        self, base: ToolOutcome, args: dict[str, Any], msgs: Sequence[ToolMessage], voice: _Voice
    ) -> ToolOutcome:
        voice.say(tm.start_message(msgs, args, call_id=base.call_id))
        final = tm.result_message(msgs, args, failed=False)
        voice.say(final)
        spoken = " ".join(m.content for m in voice.said)
        notice = PipelineNotice("end-call", {"reason": "assistant-ended-call", "message": spoken})
        return replace(base, result="Ending the call.", notices=(notice,), ask_model=False)

    def _dtmf(
        self, base: ToolOutcome, args: dict[str, Any], msgs: Sequence[ToolMessage], voice: _Voice
    ) -> ToolOutcome:
        digits = re.sub(r"[\s,-]", "", str(args.get("digits") or args.get("keys") or ""))
        if not DTMF_RE.match(digits):
            voice.say(tm.result_message(msgs, args, failed=True))
            return replace(base, error="digits must be 1-64 of 0-9, *, #, A-D or w")
        voice.say(tm.start_message(msgs, args, call_id=base.call_id))
        final = tm.result_message(msgs, args, failed=False)
        voice.say(final)
        out = replace(
            base,
            result=f"Sent DTMF {digits}.",
            notices=(PipelineNotice("dtmf", {"digits": digits}),),
        )
        return self._after_result(out, final)

    def _transfer(
        self,
        tool: ToolDef,
        base: ToolOutcome,
        args: dict[str, Any],
        msgs: Sequence[ToolMessage],
        voice: _Voice,
        variables: Mapping[str, Any],
    ) -> ToolOutcome:
        dest, server_message, error = self._choose_destination(tool, base, args)
        if dest is None:
            voice.say(tm.result_message(msgs, args, failed=True))
            return replace(base, error=error or "no transfer destination")
        voice.say(tm.start_message(msgs, args, call_id=base.call_id))
        if server_message:
            voice.say(server_message)
        announce = render(str(dest.get("message") or ""), variables)
        voice.say(ToolMessage(ANNOUNCE, announce, blocking=True) if announce.strip() else None)
        public = {k: v for k, v in dest.items() if k != "message"}
        if public.get("type") == "assistant" or tool.type == "handoff":
            public.setdefault("type", "assistant")
            notice = PipelineNotice("handoff", {"destination": public, "message": announce})
            result = f"Handing the call over to {destination_key(public)}."
        else:
            notice = PipelineNotice("transfer", {"destination": public, "message": announce})
            result = f"Transferring the call to {destination_key(public)}."
        return replace(base, result=result, notices=(notice,), ask_model=False)

    def _choose_destination(
        self, tool: ToolDef, base: ToolOutcome, args: dict[str, Any]
    ) -> tuple[Mapping[str, Any] | None, ToolMessage | None, str | None]:
        options = tool.destinations
        wanted = args.get("destination")
        if isinstance(wanted, Mapping):
            wanted = destination_key(wanted)
        wanted = str(wanted or args.get("number") or args.get("sipUri") or "").strip()
        if options:
            if not wanted:
                if len(options) == 1:
                    return options[0], None, None
                return None, None, "several destinations: the destination argument is required"
            for dest in options:
                if _same_destination(destination_key(dest), wanted):
                    return dest, None, None
            keys = ", ".join(destination_key(d) for d in options)
            return None, None, f"unknown destination {wanted!r}; choose one of: {keys}"
        if tool.type == "handoff":
            return None, None, "the handoff tool has no destinations"
        return self._ask_destination(base)

    def _ask_destination(
        self, base: ToolOutcome
    ) -> tuple[Mapping[str, Any] | None, ToolMessage | None, str | None]:
        """``transfer-destination-request`` to the assistant's server; its answer names the destination."""
        payload = wm.envelope("transfer-destination-request", self.context, {})
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        request, problem = self._server_request(
            "transfer-destination-request", None, body, base.call_id
        )
        if request is None:
            return None, None, f"no transfer destination ({problem})"
        answer = self._send(request)
        if answer.error or answer.status is None or not 200 <= answer.status < 300:
            return (
                None,
                None,
                f"transfer-destination-request failed: {answer.error or answer.status}",
            )
        try:
            data = json.loads(answer.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None, None, "transfer-destination-request: the answer is not valid JSON"
        if not isinstance(data, Mapping) or not isinstance(data.get("destination"), Mapping):
            error = data.get("error") if isinstance(data, Mapping) else None
            return None, None, f"transfer-destination-request: {error or 'no destination'}"
        dest = dict(data["destination"])
        if dest.get("type") not in ("number", "sip", "assistant") or not destination_key(dest):
            return None, None, "transfer-destination-request: the destination is incomplete"
        message = data.get("message")
        said = None
        if isinstance(message, Mapping) and isinstance(message.get("content"), str):
            said = ToolMessage(tm.START, message["content"])
        return dest, said, None

    # ------------------------------------------------------------------ shared

    def _finish(
        self,
        base: ToolOutcome,
        result: str | None,
        error: str | None,
        server_msg: Any,
        msgs: Sequence[ToolMessage],
        args: dict[str, Any],
        voice: _Voice,
        answer: HttpAnswer,
        request: _Request | None = None,
    ) -> ToolOutcome:
        final = tm.result_message(msgs, args, failed=error is not None, server_message=server_msg)
        voice.say(final)
        limit = self.settings.max_result_chars
        out = replace(
            base,
            result=None if result is None else _bounded(result, limit),
            error=None if error is None else _bounded(error, 2000),
            status_code=answer.status,
            latency_ms=answer.latency_ms,
            request_bytes=len(request.body or b"") if request else 0,
            response_bytes=len(answer.body),
        )
        return self._after_result(out, final)

    @staticmethod
    def _after_result(out: ToolOutcome, final: ToolMessage | None) -> ToolOutcome:
        """A spoken request-complete/failed replaces the model's reply; it may end the call."""
        if final is None or not final.spoken:
            return out
        notices = out.notices
        if final.end_call_after_spoken:
            notices += (
                PipelineNotice(
                    "end-call",
                    {
                        "reason": "assistant-ended-call-after-message-spoken",
                        "message": final.content,
                    },
                ),
            )
        return replace(out, ask_model=False, notices=notices)

    def _send_with_messages(
        self,
        request: _Request,
        start: ToolMessage | None,
        msgs: Sequence[ToolMessage],
        args: dict[str, Any],
        voice: _Voice,
    ) -> HttpAnswer:
        """Say request-start (before the request when blocking, else while it runs), send, and say each
        request-response-delayed message whose time comes before the answer."""
        if start is not None and start.blocking:
            voice.say(start)
        t0 = time.monotonic()
        job = gevent.spawn(self._send, request)
        try:
            if start is not None and not start.blocking:
                voice.say(start)
            for msg in tm.delayed_messages(msgs, args):
                wait = t0 + (msg.timing_ms or 0) / 1000.0 - time.monotonic()
                if wait > 0:
                    job.join(timeout=wait)
                if job.ready():
                    break
                voice.say(msg)
            job.join(timeout=max(0.0, t0 + request.timeout + 1.0 - time.monotonic()))
            if not job.ready():
                return HttpAnswer(None, error=f"timed out after {request.timeout:g} s")
            if not job.successful():
                log.error("tool request failed unexpectedly: %r", job.exception)
                return HttpAnswer(None, error="the request failed")
            return job.value
        finally:
            if not job.dead:
                job.kill(block=False)

    def _send(self, request: _Request) -> HttpAnswer:
        return http_request(
            request.method,
            request.url,
            request.body,
            request.headers,
            timeout=request.timeout,
            settings=self.settings,
            policy=self.url_policy,
            resolver=self.resolver,
        )

    def _timeout(self, value: Any) -> float:
        try:
            seconds = float(value) if value is not None else self.settings.default_timeout
        except (TypeError, ValueError):
            seconds = self.settings.default_timeout
        return max(0.1, min(seconds, self.settings.max_timeout))

    def _server_request(
        self, message_type: str, tool: ToolDef | None, body: bytes, call_id: str
    ) -> tuple[_Request | None, str]:
        """The POST of a server message to its target (tool server first for tool-calls), signed."""
        targets = resolve_targets(
            message_type,
            assistant=self.assistant,
            phone_number=self.phone_number,
            tool=tool.definition if tool is not None else None,
        )
        if not targets:
            return None, "no server URL for this tool (tool, assistant or phone number)"
        target = targets[0]
        owner = {
            "tool": tool.definition if tool is not None else None,
            "assistant": self.assistant,
            "phone-number": self.phone_number,
        }.get(target.source)
        server = (owner or {}).get("server") or {}
        try:
            auths: list[Auth] = []
            sealed = server.get(SEALED_KEY) if isinstance(server, Mapping) else None
            if sealed:
                if self.unseal is None:
                    raise SigningError("the server's secret is sealed and no key was given")
                secret = self.unseal(str(sealed))
                if secret:
                    auths.append(SecretHeaderAuth(secret))
            elif target.secret and not str(target.secret).startswith("****"):
                auths.append(SecretHeaderAuth(str(target.secret)))
            cred_auths, cred_headers = self._credential_auths(target.credential_id)
            auths += cred_auths
            headers = {**target.header_dict(), **cred_headers}
            signed = self._sign(body, target.url, "POST", auths, headers, call_id)
        except (SigningError, LookupError) as exc:
            return None, f"server authentication: {exc}"
        return _Request(target.url, "POST", body, signed, self._timeout(target.timeout_seconds)), ""

    def _credential_auths(self, credential_id: str | None) -> tuple[list[Auth], dict[str, str]]:
        if not credential_id:
            return [], {}
        cred = self.credentials(credential_id) if self.credentials is not None else None
        if cred is None:
            raise LookupError(f"credential {credential_id} not found")
        auths: list[Auth] = []
        plan = cred.get("authenticationPlan")
        if isinstance(plan, Mapping):
            auths.append(auth_from_plan(plan))
        elif cred.get("apiKey") or cred.get("token"):
            auths.append(
                auth_from_plan({"type": "bearer", "token": cred.get("apiKey") or cred.get("token")})
            )
        headers = {str(k): str(v) for k, v in (cred.get("headers") or {}).items()}
        return auths, headers

    def _sign(
        self,
        body: bytes,
        url: str,
        method: str,
        auths: Sequence[Auth],
        headers: Mapping[str, str],
        call_id: str,
    ) -> dict[str, str]:
        token = None
        for auth in auths:
            if isinstance(auth, OAuth2Auth):
                token = self._oauth_token(auth)
        signed = sign_request(
            body=body,
            url=url,
            auths=auths,
            static_headers=headers,
            method=method,
            message_id=call_id,
            oauth_token=token,
        )
        if not body and method in ("GET", "DELETE"):
            signed.pop("Content-Type", None)
        return signed

    def _oauth_token(self, auth: OAuth2Auth) -> str:
        key = (auth.url, auth.client_id, auth.scope, hash(auth.client_secret))
        hit = self._tokens.get(key)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        form = {
            "grant_type": "client_credentials",
            "client_id": auth.client_id,
            "client_secret": auth.client_secret,
        }
        if auth.scope:
            form["scope"] = auth.scope
        answer = self._send(
            _Request(
                auth.url,
                "POST",
                urlencode(form).encode(),
                {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                self.settings.default_timeout,
            )
        )
        if answer.error or answer.status is None or not 200 <= answer.status < 300:
            raise SigningError(f"oauth2 token request failed: {answer.error or answer.status}")
        try:
            data = json.loads(answer.body)
            token = str(data["access_token"])
            ttl = float(data.get("expires_in") or 300)
        except (ValueError, KeyError, TypeError) as exc:
            raise SigningError("oauth2 token response has no access_token") from exc
        self._tokens[key] = (token, time.monotonic() + max(0.0, ttl - 30))
        return token


def _same_destination(key: str, wanted: str) -> bool:
    if key == wanted or key.lower() == wanted.lower():
        return True
    digits = re.sub(r"\D", "", key)
    return (
        bool(digits) and digits == re.sub(r"\D", "", wanted) and not re.search(r"[A-Za-z@]", wanted)
    )


# ---------------------------------------------------------------------------------- database loaders


def db_tool_loader() -> Callable[[str], dict[str, Any] | None]:
    """``load_tool`` for :func:`~esl_controller.pipeline.tools.spec.build_toolset` from the Tool table."""
    from esl_controller.db.models.resources import Tool

    def load(tool_id: str) -> dict[str, Any] | None:
        row = Tool.get_or_none(Tool.id == tool_id)
        if row is None:
            return None
        return {**(row.data or {}), "id": row.id, "type": row.type}

    return load


def db_credential_loader(box: Any) -> CredentialLoader:
    """Credentials from the Credential table, secrets opened with ``box`` (a ``SecretBox``)."""
    from esl_controller.db.models.resources import Credential

    def load(credential_id: str) -> dict[str, Any] | None:
        row = Credential.get_or_none(Credential.id == credential_id)
        if row is None:
            return None
        out = _deep_merge(row.data or {}, box.open(row.secret_blob))
        out.update({"id": row.id, "provider": row.provider})
        return out

    return load


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def box_unseal(box: Any) -> Unseal:
    """Opens a legacy ``server.secretSealed`` token (sealed by the API as ``{"secret": ...}``)."""

    def unseal(token: str) -> str | None:
        return box.open(token).get("secret")

    return unseal
