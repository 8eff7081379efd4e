"""Webhook delivery workers (I/O): claim due jobs, POST them, record every attempt.

One :class:`Deliverer` per process runs three kinds of greenlet:

* a dispatcher that claims as many due jobs as there are idle workers (``queue.claim``, leased to this
  deliverer), loads the endpoints and credentials they need in two queries, and hands out send plans;
* ``workers`` senders, each with its own small keep-alive connection cache;
* a recorder that writes finished attempts and the jobs' new states in batches (``queue.record``).

Database errors (a restart, a failover) are logged and retried with a growing pause; a job whose result
could not be written keeps its lease, and when the lease expires it is claimed and sent again: delivery
is at least once, and the job id travels in ``X-Esl-Webhook-Id`` (and the HMAC ``messageIdHeader``) so
receivers can drop duplicates.

HTTP: ``http.client`` with the connection pinned to an address that passed ``targets.check_url`` (no
second DNS lookup), a connect timeout, a read timeout, and one deadline over the whole attempt. Redirects
are never followed automatically: up to ``max_redirects`` hops are followed by hand, each hop's URL
checked against the policy again, with the same method, body and headers; a URL seen twice is a redirect
loop. At most ``excerpt_bytes`` of a response body are read; a longer body is cut off by closing the
connection, so a 5 MB answer costs 2 KB of memory.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import gevent
import gevent.event
import gevent.pool
import gevent.queue

from esl_controller.db.base import database
from esl_controller.db.models.resources import Credential, WebhookEndpoint
from esl_controller.db.models.webhooks import WebhookAttempt, WebhookJob
from esl_controller.security.secrets_box import SecretBox, SecretBoxError
from esl_controller.webhooks import queue
from esl_controller.webhooks.outbox import ID_HEADER, SEALED_SECRET_KEY
from esl_controller.webhooks.pinned import PinnedConnection, system_resolver
from esl_controller.webhooks.signing import (
    Auth,
    OAuth2Auth,
    SecretHeaderAuth,
    SigningError,
    auth_from_plan,
    mask_headers,
    secret_header_names,
    sign_request,
)
from esl_controller.webhooks.targets import DEFAULT_TIMEOUT_SECONDS, Resolver, UrlPolicy, check_url

log = logging.getLogger("esl_controller.webhooks")

ATTEMPT_HEADER = "X-Esl-Webhook-Attempt"
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class DeliverySettings:
    #: sender greenlets (concurrent requests)
    workers: int = 8
    #: seconds between claims when the queue is empty
    poll_interval: float = 0.2
    connect_timeout: float = 5.0
    #: per attempt when a target sets no ``timeoutSeconds``
    default_timeout: float = DEFAULT_TIMEOUT_SECONDS
    #: default budget for jobs enqueued by callers that pass it on (``outbox.enqueue(max_attempts=)``)
    max_attempts: int = 8
    backoff_base: float = 2.0
    backoff_cap: float = 600.0
    #: how long a claim holds a job; an attempt's deadline is kept below it
    lease_seconds: float = 60.0
    max_redirects: int = 3
    excerpt_bytes: int = queue.EXCERPT_LIMIT
    #: most jobs claimed at once
    batch_size: int = 100
    url_policy: UrlPolicy = field(default_factory=UrlPolicy)


# --------------------------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class HttpResult:
    status_code: int | None
    excerpt: str
    error: str | None
    latency_ms: int
    #: not worth retrying (URL refused by policy)
    permanent: bool = False


class _Redirect(Exception):
    pass


class HttpClient:
    """One sender's client: a few keep-alive connections, policy checks on every hop. Not shared."""

    def __init__(self, settings: DeliverySettings, resolver: Resolver = system_resolver) -> None:
        self.settings = settings
        self.resolver = resolver
        self._conns: OrderedDict[tuple, PinnedConnection] = OrderedDict()

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
        limit: int | None = None,
    ) -> HttpResult:
        """POST ``body`` to ``url``; never raises for network or HTTP trouble (it is in the result)."""
        limit = self.settings.excerpt_bytes if limit is None else limit
        started = time.monotonic()
        seen = {url}
        current = url

        def done(status: int | None, excerpt: str, error: str | None, permanent: bool = False):
            elapsed = int((time.monotonic() - started) * 1000)
            return HttpResult(status, excerpt, error, elapsed, permanent)

        try:
            with gevent.Timeout(timeout, _Deadline(timeout)):
                for _hop in range(self.settings.max_redirects + 1):
                    decision = check_url(current, self.settings.url_policy, self.resolver)
                    if not decision.allowed:
                        return done(None, "", f"URL refused: {decision.reason}", permanent=True)
                    status, excerpt, location = self._exchange(
                        current, decision.host, decision.port, decision.addresses, body, headers,
                        timeout, limit,
                    )  # fmt: skip
                    if status not in REDIRECT_CODES or not location:
                        return done(status, excerpt, None)
                    nxt = urljoin(current, location)
                    if nxt in seen:
                        return done(status, excerpt, f"redirect loop at {nxt}")
                    seen.add(nxt)
                    current = nxt
                return done(status, excerpt, f"more than {self.settings.max_redirects} redirects")
        except _Deadline as exc:
            self.close()
            return done(None, "", str(exc))
        except TimeoutError as exc:
            return done(None, "", f"timeout: {exc or 'no answer in time'}")
        except ConnectionRefusedError:
            return done(None, "", "connection refused")
        except ConnectionResetError:
            return done(None, "", "connection reset by peer")
        except http.client.RemoteDisconnected:
            return done(None, "", "connection closed without a response")
        except http.client.HTTPException as exc:
            return done(None, "", f"bad HTTP response: {type(exc).__name__}: {exc}")
        except ssl.SSLError as exc:
            return done(None, "", f"TLS error: {exc}")
        except OSError as exc:
            return done(None, "", f"network error: {exc}")

    def _connection(self, scheme: str, host: str, port: int, address: str) -> tuple[Any, bool]:
        key = (scheme, host, port, address)
        conn = self._conns.pop(key, None)
        if conn is not None:
            self._conns[key] = conn
            return conn, True
        conn = PinnedConnection(
            host, port, address, self.settings.connect_timeout, tls=scheme == "https"
        )
        self._conns[key] = conn
        while len(self._conns) > 16:
            _, old = self._conns.popitem(last=False)
            old.close()
        return conn, False

    def _drop(self, conn: Any) -> None:
        conn.close()
        for key, value in list(self._conns.items()):
            if value is conn:
                del self._conns[key]

    def _exchange(
        self,
        url: str,
        host: str,
        port: int,
        addresses: Sequence[str],
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
        limit: int,
    ) -> tuple[int, str, str | None]:
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        scheme = parts.scheme.lower()
        for index, address in enumerate(addresses):
            last_address = index == len(addresses) - 1
            for _try in range(2):
                conn, reused = self._connection(scheme, host, port, address)
                conn.timeout = timeout
                if conn.sock is None:
                    try:
                        conn.connect()
                    except OSError:
                        self._drop(conn)
                        if last_address:
                            raise
                        break  # could not connect: the next checked address
                conn.sock.settimeout(timeout)
                try:
                    conn.request("POST", path, body=body, headers=dict(headers))
                    resp = conn.getresponse()
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    self._drop(conn)
                    if reused:
                        continue  # a stale keep-alive connection: once more on a fresh one
                    raise
                except BaseException:
                    self._drop(conn)
                    raise
                try:
                    data = resp.read(limit) if limit > 0 else b""
                    location = resp.getheader("Location")
                    status = resp.status
                finally:
                    if not resp.isclosed() or resp.will_close:
                        self._drop(conn)  # body longer than the excerpt, or no keep-alive
                return status, data.decode("utf-8", "replace"), location
        raise ConnectionResetError("no address could be used")  # pragma: no cover


class _Deadline(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"timed out after {seconds:g} s")


# --------------------------------------------------------------------------------------- send plans


@dataclass(frozen=True)
class SendPlan:
    """Everything needed to send one job once (secrets inside; never logged)."""

    job_id: str
    number: int
    url: str
    body: bytes
    timeout: float
    static_headers: tuple[tuple[str, str], ...] = ()
    auths: tuple[Auth, ...] = field(default=(), repr=False)
    secret_names: frozenset[str] = frozenset()
    #: a reason to fail without sending (bad credential)
    problem: str | None = None
    #: a reason to skip without sending (endpoint disabled or deleted)
    skip: str | None = None


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_credentials(ids: Iterable[str], box: SecretBox) -> dict[str, dict[str, Any] | str]:
    """``{id: full body with secrets}``, or ``{id: error text}`` when the secret cannot be opened."""
    wanted = sorted({i for i in ids if i})
    out: dict[str, dict[str, Any] | str] = {}
    if not wanted:
        return out
    for row in Credential.select().where(Credential.id.in_(wanted)):
        try:
            out[row.id] = _merge(row.data or {}, box.open(row.secret_blob))
        except SecretBoxError as exc:
            out[row.id] = str(exc)
    return out


def current_target(target: Mapping[str, Any], endpoint: WebhookEndpoint | None) -> dict[str, Any]:
    """A stored target with its endpoint's present URL, headers, timeout and credential."""
    if endpoint is None:
        return dict(target)
    data = endpoint.data or {}
    out = dict(target)
    out.update(
        url=endpoint.url,
        headers=dict(data.get("headers") or {}),
        timeoutSeconds=float(data.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS),
    )
    out.pop("credentialId", None)
    if endpoint.credential_id:
        out["credentialId"] = endpoint.credential_id
    return out


def make_plan(
    job: WebhookJob,
    number: int,
    target: Mapping[str, Any],
    endpoints: Mapping[str, WebhookEndpoint],
    credentials: Mapping[str, dict[str, Any] | str],
    box: SecretBox,
    max_timeout: float,
) -> SendPlan:
    url = str(target.get("url") or job.target_url)
    timeout = min(float(target.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS), max_timeout)
    body = json.dumps(job.payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    base = dict(job_id=job.id, number=number, url=url, body=body, timeout=timeout)
    endpoint_id = target.get("endpointId")
    if endpoint_id:
        endpoint = endpoints.get(endpoint_id)
        if endpoint is None:
            return SendPlan(**base, skip=f"webhook endpoint {endpoint_id} was deleted")
        if not endpoint.enabled:
            return SendPlan(**base, skip=f"webhook endpoint {endpoint_id} is disabled")
    headers = {str(k): str(v) for k, v in (target.get("headers") or {}).items()}
    auths: list[Auth] = []
    secret_names: set[str] = set()
    try:
        sealed = target.get(SEALED_SECRET_KEY)
        if sealed:
            auths.append(SecretHeaderAuth(str(box.open(sealed)["secret"])))
        cred_id = target.get("credentialId")
        if cred_id:
            cred = credentials.get(cred_id)
            if cred is None:
                return SendPlan(**base, problem=f"credential {cred_id} not found")
            if isinstance(cred, str):
                return SendPlan(**base, problem=f"credential {cred_id}: {cred}")
            if cred.get("authenticationPlan"):
                auths.append(auth_from_plan(cred["authenticationPlan"]))
            for name, value in (cred.get("headers") or {}).items():
                headers[str(name)] = str(value)
                secret_names.add(str(name).lower())
    except (SigningError, SecretBoxError, KeyError) as exc:
        return SendPlan(**base, problem=f"authentication: {exc}")
    headers[ID_HEADER] = job.id
    headers[ATTEMPT_HEADER] = str(number)
    return SendPlan(
        **base,
        static_headers=tuple(headers.items()),
        auths=tuple(auths),
        secret_names=frozenset(secret_names),
    )


class TokenCache:
    """OAuth2 client-credentials access tokens, cached until shortly before they expire."""

    def __init__(self) -> None:
        self._tokens: dict[tuple, tuple[str, float]] = {}

    def get(self, auth: OAuth2Auth, client: HttpClient, timeout: float) -> str:
        key = (auth.url, auth.client_id, auth.scope, hash(auth.client_secret))
        hit = self._tokens.get(key)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        form = {"grant_type": "client_credentials", "client_id": auth.client_id}
        form["client_secret"] = auth.client_secret
        if auth.scope:
            form["scope"] = auth.scope
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        res = client.post(auth.url, urlencode(form).encode(), headers, timeout, limit=65536)
        if res.error or res.status_code is None or not 200 <= res.status_code < 300:
            raise SigningError(f"oauth2 token request failed: {res.error or res.status_code}")
        try:
            answer = json.loads(res.excerpt)
            token = str(answer["access_token"])
            ttl = float(answer.get("expires_in") or 300)
        except (ValueError, KeyError, TypeError) as exc:
            raise SigningError("oauth2 token response has no access_token") from exc
        self._tokens[key] = (token, time.monotonic() + max(0.0, ttl - 30))
        return token


def send(plan: SendPlan, client: HttpClient, tokens: TokenCache, replay: bool = False):
    """Send one plan; the attempt as a :class:`queue.AttemptResult` (not yet stored)."""
    common = dict(job_id=plan.job_id, number=plan.number, request_url=plan.url, replay=replay)
    if plan.skip:
        return queue.AttemptResult(**common, error=plan.skip, skip=True)
    if plan.problem:
        return queue.AttemptResult(**common, error=plan.problem, permanent=True)
    oauth_token = None
    try:
        for auth in plan.auths:
            if isinstance(auth, OAuth2Auth):
                oauth_token = tokens.get(auth, client, plan.timeout)
        headers = sign_request(
            body=plan.body,
            url=plan.url,
            auths=plan.auths,
            static_headers=plan.static_headers,
            message_id=plan.job_id,
            oauth_token=oauth_token,
        )
    except SigningError as exc:
        return queue.AttemptResult(**common, error=str(exc))
    masked = mask_headers(headers, plan.secret_names | secret_header_names(plan.auths))
    res = client.post(plan.url, plan.body, headers, plan.timeout)
    return queue.AttemptResult(
        **common,
        request_headers=masked,
        status_code=res.status_code,
        latency_ms=res.latency_ms,
        error=res.error,
        response_excerpt=res.excerpt or None,
        permanent=res.permanent,
    )


# ---------------------------------------------------------------------------------------- Deliverer


def _reset_connection() -> None:
    """Drop this greenlet's database connection after an error (it may be broken)."""
    try:
        if not database.is_closed():
            if hasattr(database.obj, "manual_close"):
                database.obj.manual_close()
            else:
                database.close()
    except Exception as exc:  # noqa: BLE001 - a broken connection may fail to close; forget it
        log.debug("closing a broken database connection failed: %s", exc)


class Deliverer:
    """Claims and delivers webhook jobs until stopped. ``run_once`` does one round without greenlets."""

    def __init__(
        self,
        settings: DeliverySettings,
        box: SecretBox,
        *,
        node_id: str = "node",
        resolver: Resolver = system_resolver,
        rng: random.Random | None = None,
        client_factory: Callable[[], HttpClient] | None = None,
    ) -> None:
        if settings.workers < 1:
            raise ValueError("workers must be at least 1")
        self.settings = settings
        self.box = box
        self.worker_id = f"{node_id}:{uuid.uuid4().hex[:12]}"[:64]
        self.resolver = resolver
        self.rng = rng or random.Random()
        self._client_factory = client_factory or (lambda: HttpClient(settings, resolver))
        self.tokens = TokenCache()
        self._stopping = gevent.event.Event()
        self._wake = gevent.event.Event()
        self._slot_freed = gevent.event.Event()
        self._work: gevent.queue.Queue = gevent.queue.Queue()
        self._results: gevent.queue.Queue = gevent.queue.Queue()
        self._inflight = 0
        self._dispatcher: gevent.Greenlet | None = None
        self._recorder: gevent.Greenlet | None = None
        self._senders: list[gevent.Greenlet] = []
        #: counters for metrics: attempts recorded per verdict, database errors
        self.stats: dict[str, int] = {}

    # -- shared pieces --------------------------------------------------------------------------
    def _max_timeout(self) -> float:
        return max(1.0, self.settings.lease_seconds - self.settings.connect_timeout - 5.0)

    def claim_plans(self, limit: int) -> list[SendPlan]:
        jobs = queue.claim(self.worker_id, limit, self.settings.lease_seconds)
        if not jobs:
            return []
        endpoint_ids = [
            j.target.get("endpointId") for j in jobs if (j.target or {}).get("endpointId")
        ]
        endpoints = {}
        if endpoint_ids:
            query = WebhookEndpoint.select(WebhookEndpoint.id, WebhookEndpoint.enabled)
            endpoints = {e.id: e for e in query.where(WebhookEndpoint.id.in_(endpoint_ids))}
        credentials = load_credentials(
            ((j.target or {}).get("credentialId") for j in jobs), self.box
        )
        return [
            make_plan(
                j, j.attempts, j.target or {}, endpoints, credentials, self.box, self._max_timeout()
            )
            for j in jobs
        ]

    def _record(self, results: list[queue.AttemptResult]) -> None:
        states = queue.record(
            results,
            self.worker_id,
            backoff_base=self.settings.backoff_base,
            backoff_cap=self.settings.backoff_cap,
            rng=self.rng,
        )
        for state in states.values():
            self.stats[state] = self.stats.get(state, 0) + 1

    def _send_safely(self, plan: SendPlan, client: HttpClient) -> queue.AttemptResult:
        try:
            return send(plan, client, self.tokens)
        except Exception as exc:  # noqa: BLE001 - a bug in one send must not kill the sender
            log.exception("webhook job %s: unexpected error while sending", plan.job_id)
            return queue.AttemptResult(
                job_id=plan.job_id, number=plan.number, request_url=plan.url,
                error=f"internal error: {type(exc).__name__}: {exc}",
            )  # fmt: skip

    # -- one round, for tests ---------------------------------------------------------------------
    def run_once(self, limit: int | None = None) -> int:
        """Claim up to ``limit`` (default: ``workers``) due jobs, send them concurrently, record the
        attempts; returns how many were attempted."""
        database.connect(reuse_if_open=True)
        plans = self.claim_plans(limit or self.settings.workers)
        if not plans:
            return 0
        pool = gevent.pool.Pool(self.settings.workers)

        def one(plan: SendPlan) -> queue.AttemptResult:
            client = self._client_factory()
            try:
                return self._send_safely(plan, client)
            finally:
                client.close()

        results = list(pool.imap(one, plans))
        self._record(results)
        return len(plans)

    # -- background operation -------------------------------------------------------------------
    def start(self) -> None:
        if self._dispatcher is not None:
            raise RuntimeError("deliverer already started")
        self._stopping.clear()
        self._senders = [gevent.spawn(self._sender_loop) for _ in range(self.settings.workers)]
        self._recorder = gevent.spawn(self._record_loop)
        self._dispatcher = gevent.spawn(self._dispatch_loop)
        log.info("webhook delivery started: %s workers (%s)", self.settings.workers, self.worker_id)

    def wake(self) -> None:
        """Claim now instead of at the next poll (call after committing new jobs)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop claiming, let sends in flight finish and their attempts be written, within ``timeout``.
        Returns False when greenlets had to be killed (their jobs are sent again after the lease)."""
        if self._dispatcher is None:
            return True
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        self._slot_freed.set()
        clean = True
        self._dispatcher.join(timeout=max(0.0, deadline - time.monotonic()))
        if not self._dispatcher.dead:
            self._dispatcher.kill(block=True, timeout=1)
            clean = False
        for _ in self._senders:
            self._work.put(None)
        gevent.joinall(self._senders, timeout=max(0.0, deadline - time.monotonic()))
        self._results.put(None)
        if self._recorder is not None:
            self._recorder.join(timeout=max(0.0, deadline - time.monotonic()))
        for g in [*self._senders, self._recorder]:
            if g is not None and not g.dead:
                g.kill(block=True, timeout=1)
                clean = False
        self._dispatcher = self._recorder = None
        self._senders = []
        log.info("webhook delivery stopped%s", "" if clean else " (some sends abandoned)")
        return clean

    def _pause(self, failures: int) -> float:
        return min(5.0, 0.1 * 2 ** min(failures, 6))

    def _dispatch_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            free = self.settings.workers - self._inflight
            if free <= 0:
                self._slot_freed.wait(timeout=self.settings.poll_interval)
                self._slot_freed.clear()
                continue
            try:
                database.connect(reuse_if_open=True)
                plans = self.claim_plans(min(free, self.settings.batch_size))
                failures = 0
            except Exception as exc:  # noqa: BLE001 - database trouble: log, wait, try again
                failures += 1
                self.stats["db_errors"] = self.stats.get("db_errors", 0) + 1
                log.warning(
                    "webhook claim failed (%s); retrying in %.1f s", exc, self._pause(failures)
                )
                _reset_connection()
                self._stopping.wait(timeout=self._pause(failures))
                continue
            for plan in plans:
                self._inflight += 1
                self._work.put(plan)
            if not plans:
                self._wake.wait(timeout=self.settings.poll_interval)
                self._wake.clear()
        _reset_connection()

    def _sender_loop(self) -> None:
        client = self._client_factory()
        try:
            while True:
                plan = self._work.get()
                if plan is None:
                    return
                result = self._send_safely(plan, client)
                self._results.put(result)
                self._inflight -= 1
                self._slot_freed.set()
        finally:
            client.close()

    def _record_loop(self) -> None:
        pending: list[queue.AttemptResult] = []
        failures = 0
        finished = False
        while True:
            if not pending and not finished:
                item = self._results.get()
                if item is None:
                    finished = True
                else:
                    pending.append(item)
            while len(pending) < 1000:
                try:
                    item = self._results.get_nowait()
                except gevent.queue.Empty:
                    break
                if item is None:
                    finished = True
                else:
                    pending.append(item)
            if pending:
                try:
                    database.connect(reuse_if_open=True)
                    self._record(pending)
                    pending = []
                    failures = 0
                    self._wake.set()
                except Exception as exc:  # noqa: BLE001 - database trouble: keep the results, retry
                    failures += 1
                    self.stats["db_errors"] = self.stats.get("db_errors", 0) + 1
                    log.warning(
                        "recording %d webhook attempts failed (%s); retrying in %.1f s",
                        len(pending), exc, self._pause(failures),
                    )  # fmt: skip
                    _reset_connection()
                    gevent.sleep(self._pause(failures))
                    continue
            if finished and not pending:
                _reset_connection()
                return


# ------------------------------------------------------------------------------------------ replay


class ReplayError(ValueError):
    """The job's current target cannot be used (endpoint deleted or disabled)."""


def replay(
    job: WebhookJob,
    box: SecretBox,
    settings: DeliverySettings,
    *,
    number: int,
    resolver: Resolver = system_resolver,
    timeout: float | None = None,
) -> queue.AttemptResult:
    """Send ``job``'s payload once more, now, to its *current* target (the endpoint and credential are
    read again). Returns the attempt (``replay=True``) for the caller to store; the job is unchanged."""
    target = job.target or {}
    endpoints: dict[str, WebhookEndpoint] = {}
    endpoint_id = target.get("endpointId")
    if endpoint_id:
        endpoint = WebhookEndpoint.get_or_none(WebhookEndpoint.id == endpoint_id)
        if endpoint is None:
            raise ReplayError(f"webhook endpoint {endpoint_id} was deleted")
        if not endpoint.enabled:
            raise ReplayError(f"webhook endpoint {endpoint_id} is disabled")
        endpoints[endpoint.id] = endpoint
        target = current_target(target, endpoint)
    credentials = load_credentials([target.get("credentialId")], box)
    max_timeout = timeout if timeout is not None else settings.default_timeout
    plan = make_plan(job, number, target, endpoints, credentials, box, max_timeout)
    client = HttpClient(settings, resolver)
    try:
        return send(plan, client, TokenCache(), replay=True)
    finally:
        client.close()


def store_attempt(result: queue.AttemptResult, org_id: str) -> WebhookAttempt:
    """Write one attempt row as it is (used for replays) and return it."""
    return WebhookAttempt.create(
        org_id=org_id,
        job=result.job_id,
        number=result.number,
        request_url=result.request_url,
        request_headers=result.request_headers,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        error=result.error,
        response_excerpt=result.response_excerpt,
        replay=result.replay,
    )
