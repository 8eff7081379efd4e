"""The call controller of one process: inbound ESL connection, outbound-socket server, fork
WebSocket server, the session registry and the call service; started with ``serve``, stopped on
shutdown (live calls end with ``worker-shutdown``).

    ctl = Controller(settings)
    ctl.start()                  # binds the servers (raises OSError if a port is taken)
    app.extensions["esl_controller"].calls = ctl.service
    app.extensions["esl_controller"].readiness["freeswitch"] = ctl.readiness
    ...
    ctl.stop()

With ``freeswitch.enabled`` false only web calls work; live calls left by a previous run are
ended at start (reconcile.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from esl_controller.calls import reconcile
from esl_controller.calls.media import PLAY_AUDIO, on_play_audio_event
from esl_controller.calls.registry import CHANNEL_EVENTS, FORK_SUBCLASSES, Registry
from esl_controller.calls.session import SessionDeps
from esl_controller.config import Settings
from esl_controller.esl.commands import SocketTarget
from esl_controller.services import CallService

log = logging.getLogger("esl_controller.controller")

#: ``Controller(pipeline_factory=...)`` default: the voice pipeline when ``media.pipeline_enabled``
DEFAULT_PIPELINE: Any = object()


class Controller:
    def __init__(
        self,
        settings: Settings,
        *,
        pipeline_factory: Callable[[Any], Any] | None = DEFAULT_PIPELINE,
        start_fork_server: bool = True,
        emitter: Any = None,
        capture: Any = None,
        secret_box: Any = None,
    ) -> None:
        self.settings = settings
        self.registry = Registry()
        self.inbound: Any = None
        self.outbound: Any = None
        self.fork_server: Any = None
        self.pipeline_factory = pipeline_factory
        self.start_fork_server = start_fork_server
        self.service: CallService | None = None
        #: the webhook Emitter for server messages of live calls (None: none are queued)
        self.emitter = emitter
        #: the capture manager (``capture.manager.CaptureManager``); built at start when None
        self.capture = capture
        self.secret_box = secret_box
        self.lifecycle: Any = None
        self.reconciled = gevent.event.Event()
        self._reconciler: gevent.Greenlet | None = None
        self.webcall_server: Any = None
        self.listen_server: Any = None
        self.web_bridge: Any = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> CallService:
        fs = self.settings.freeswitch
        if self.pipeline_factory is DEFAULT_PIPELINE:
            self.pipeline_factory = self._default_pipeline()
        deps = SessionDeps(
            registry=self.registry,
            command_timeout=fs.command_timeout,
            end_grace_seconds=self.settings.calls.end_grace_seconds,
            originate_grace=fs.originate_grace,
            transfer_dialplan=fs.transfer_dialplan,
            transfer_context=fs.transfer_context,
            audio_queue_chunks=self.settings.calls.audio_queue_chunks,
            pipeline_factory=self.pipeline_factory,
        )
        from esl_controller.calls import persist
        from esl_controller.db.connect import is_postgres

        if is_postgres():
            # leave a quarter of the pool to the API and the webhook workers
            persist.limit_writers(max(1, self.settings.database.max_connections * 3 // 4))
        deps.lifecycle = self._start_lifecycle()
        service = CallService(self.settings, self.registry, deps)
        self.service = service
        if fs.enabled:
            self._start_freeswitch(service, deps)
        self._start_media(service)
        self._reconciler = gevent.spawn(self._reconcile)
        return service

    def _start_lifecycle(self) -> Any:
        from esl_controller.calls.lifecycle import CallLifecycle

        if self.capture is None:
            from esl_controller.capture.manager import CaptureManager

            # cheap until a call is captured (settings.capture.enabled or artifactPlan.pcapEnabled)
            self.capture = CaptureManager(self.settings.pcap_dir, self.settings.capture)
        box = self.secret_box or getattr(self.emitter, "box", None)
        factory = None
        if box is not None:
            from esl_controller.observe.structured import credentialed_model_factory

            factory = credentialed_model_factory(box)
        self.lifecycle = CallLifecycle(
            self.settings, self.emitter, capture=self.capture, model_factory=factory
        )
        self.lifecycle.start()
        return self.lifecycle

    def _start_freeswitch(self, service: CallService, deps: SessionDeps) -> None:
        from esl_controller.esl.inbound import DEFAULT_EVENTS, InboundConnection, InboundSettings
        from esl_controller.esl.outbound import OutboundServer

        fs = self.settings.freeswitch
        events = tuple(dict.fromkeys([*DEFAULT_EVENTS, *CHANNEL_EVENTS]))
        self.inbound = InboundConnection(
            InboundSettings(
                host=fs.host,
                port=fs.port,
                password=fs.password,
                command_timeout=fs.command_timeout,
                events=events,
                subclasses=(*FORK_SUBCLASSES, PLAY_AUDIO),
            )
        )
        for key in (*CHANNEL_EVENTS, *FORK_SUBCLASSES):
            self.inbound.add_handler(key, self.registry.route_event)
        registry = self.registry
        self.inbound.add_handler(PLAY_AUDIO, lambda ev: on_play_audio_event(registry, ev))
        deps.inbound = self.inbound
        self.outbound = OutboundServer(
            fs.outbound_host,
            fs.outbound_port,
            service.on_socket_call,
            command_timeout=fs.command_timeout,
        )
        self.outbound.start()
        deps.socket_target = SocketTarget(fs.outbound_host, self.outbound.port)
        if self.start_fork_server:
            self._start_fork(service, deps)
        self.inbound.start()

    def _start_fork(self, service: CallService, deps: SessionDeps) -> None:
        try:
            from esl_controller.media.fork_server import ForkServer
        except ImportError as exc:
            log.warning("fork server unavailable (%s): calls run without audio fork", exc)
            return
        fs = self.settings.freeswitch
        self.fork_server = ForkServer(
            fs.fork_host,
            fs.fork_port,
            service.on_fork_stream,
            read_interval=self.settings.media.fork_read_interval_ms / 1000.0,
        )
        self.fork_server.start()
        host, port = self.fork_server.address
        url_host = fs.fork_host if fs.fork_host not in ("0.0.0.0", "::", "") else "127.0.0.1"

        def fork_url(call_id: str) -> str:
            return f"ws://{url_host}:{port}/fork/{call_id}?rate=16000&mix=mono"

        deps.fork_url = fork_url
        service.fork_enabled = True

    def _default_pipeline(self) -> Callable[[Any], Any] | None:
        from esl_controller.calls.media import WebCallBridge
        from esl_controller.calls.pipeline_factory import PipelineFactory
        from esl_controller.media.listen import default_hub
        from esl_controller.security.secrets_box import SecretBox, load_or_create_key

        self.web_bridge = WebCallBridge(self.registry)
        if not self.settings.media.pipeline_enabled:
            return None
        try:
            key = load_or_create_key(self.settings.secrets.key, self.settings.secret_key_path)
            box: Any = SecretBox(key)
        except Exception as exc:  # noqa: BLE001 - calls still work with embedded providers
            log.warning("secret key unavailable (%s): stored credentials not used", exc)
            box = None
        return PipelineFactory(self.settings, box=box, web=self.web_bridge, hub=default_hub())

    def _start_media(self, service: CallService) -> None:
        """The web-call and live-listen WebSocket servers (a port in use is logged, not fatal),
        and the embedded STT model loaded in the background."""
        from esl_controller.media.listen import ListenServer
        from esl_controller.media.webcall import WebCallServer

        media = self.settings.media
        if self.web_bridge is None:
            from esl_controller.calls.media import WebCallBridge

            self.web_bridge = WebCallBridge(self.registry)
        factory = self.pipeline_factory
        if factory is not None and getattr(factory, "web", False) is None:
            factory.web = self.web_bridge

        def is_live(call_id: str) -> bool:
            session = self.registry.get(call_id)
            return session is not None and session.is_live

        for name, build in (
            ("webcall", lambda: WebCallServer(
                media.webcall_host, media.webcall_port, self.web_bridge.on_connect
            )),
            ("listen", lambda: ListenServer(media.listen_host, media.listen_port, is_live=is_live)),
        ):  # fmt: skip
            try:
                server = build()
                server.start()
            except OSError as exc:
                log.error("cannot start the %s server: %s", name, exc)
                continue
            host, port = server.address
            host = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
            base = media.public_ws_url.rstrip("/") or f"ws://{host}:{port}"
            if name == "webcall":
                self.webcall_server, service.web_ws_base = server, base
            else:
                self.listen_server, service.listen_ws_base = server, base
        if media.warm_stt and self.pipeline_factory is not None:
            gevent.spawn(_warm_stt)

    def _reconcile(self) -> None:
        try:
            if self.inbound is not None:
                self.inbound.wait_connected(self.settings.freeswitch.command_timeout * 2)
            counts = reconcile.reconcile(self.settings, self.registry, self.service.deps)
            if any(counts.values()):
                log.info("restart reconciliation: %s", counts)
        except Exception:
            log.exception("restart reconciliation failed")
        finally:
            self.reconciled.set()

    def stop(self, timeout: float = 5.0) -> None:
        if self._reconciler is not None:
            self._reconciler.kill(block=False)
        self.registry.shutdown(timeout)
        stop_writer = getattr(self.pipeline_factory, "stop", None)
        if stop_writer is not None:
            stop_writer(timeout)
        if self.lifecycle is not None:
            self.lifecycle.stop(timeout)
        if self.outbound is not None:
            self.outbound.stop(timeout)
        if self.fork_server is not None:
            self.fork_server.stop(timeout)
        for server in (self.webcall_server, self.listen_server):
            if server is not None:
                server.stop(timeout)
        if self.inbound is not None:
            self.inbound.stop(timeout)

    # ------------------------------------------------------------------ /ready
    def readiness(self) -> tuple[bool, str]:
        if self.inbound is None:
            return True, "FreeSWITCH not configured"
        state = self.inbound.state.value
        err = self.inbound.last_error
        return state == "connected", f"inbound ESL {state}" + (f": {err}" if err else "")

    def install(self, services: Any) -> None:
        """Wire into the API's ``ApiServices`` (``app.extensions["esl_controller"]``)."""
        services.calls = self.service
        services.capture = self.capture
        if self.lifecycle is not None and not self.lifecycle.emitting and services.emitter:
            self.lifecycle.set_emitter(services.emitter)
        if self.settings.freeswitch.enabled:
            services.readiness["freeswitch"] = self.readiness


def _warm_stt() -> None:
    """Load the embedded whisper model now so the first call does not wait for it."""
    try:
        from esl_controller.pipeline.workers import PoolConfig, shared_pool

        shared_pool(PoolConfig(engine="whisper"))
    except Exception as exc:  # noqa: BLE001 - the first call will report it
        log.warning("embedded speech-to-text not warmed: %s", exc)
