"""``esl-controller serve``: the API (gevent WSGI server) and, when enabled, the controller parts."""

from __future__ import annotations

import gc
import logging
import signal
import socket
import sys

import gevent
from gevent.event import Event
from gevent.pywsgi import WSGIServer

from esl_controller.config import Settings

log = logging.getLogger("esl_controller.server")


class _QuietLog:
    """pywsgi's access log routed into our logger tree at DEBUG."""

    def write(self, line: str) -> None:
        log.debug("%s", line.rstrip())


class NoDelayWSGIServer(WSGIServer):
    """Sets TCP_NODELAY on every accepted connection (responses go out as headers then body)."""

    def handle(self, sock, address):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP (tests may hand us other sockets)
            pass
        return super().handle(sock, address)


def make_listener(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening socket with TCP_NODELAY (inherited by accepted sockets on Linux), so a response written
    as headers then body is not held back by Nagle's algorithm waiting for the client's delayed ACK."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def bootstrap_key(settings: Settings) -> str | None:
    """Create the first API key when none exists; returns it (shown once) or None."""
    from esl_controller.db.models import ApiKey
    from esl_controller.security.api_keys import create_key

    if ApiKey.select().exists():
        return None
    return create_key("bootstrap", settings.org_id).key


def settle_after_startup() -> int:
    """Once startup is done: the heap a busy hub's garbage collector has to walk is kept small.
    Returns how many objects were frozen.

    A full collection walks every tracked object: on a hub carrying calls that is a pause for every
    call's audio at once. The startup's objects (modules, schemas, the app, the providers: about
    100,000; the imports' 70,000 alone took 17 ms to walk) never become garbage, so after one last collection they are put in the
    collector's permanent generation and never walked again (what they refer to is still freed as
    usual). And greenlets spawned from now on (a call has a dozen) no longer record the stack that
    spawned them (gevent's ``track_greenlet_tree``, for debugging only): some 30 objects a call less."""
    gevent.config.track_greenlet_tree = False
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def serve(settings: Settings, ready: Event | None = None, stop: Event | None = None) -> int:
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()
    from api import create_app
    from esl_controller import db
    from esl_controller.cli import _open_db

    settings.data_path.mkdir(parents=True, exist_ok=True)
    _open_db(settings)
    with db.database.connection_context():
        db.migrate()
        key = bootstrap_key(settings)
    app = create_app(settings)
    from esl_controller.controller import Controller
    from esl_controller.webhooks.service import build_webhook_service

    box = app.extensions["esl_controller"].secret_box
    webhooks = build_webhook_service(settings, box)
    app.extensions["esl_controller"].webhook_delivery = webhooks.settings
    app.extensions["esl_controller"].emitter = webhooks.emitter
    controller = Controller(settings, emitter=webhooks.emitter, secret_box=box)
    try:
        controller.start()
    except OSError as exc:
        log.error("cannot start the call controller: %s", exc)
        controller.stop()
        return 1
    controller.install(app.extensions["esl_controller"])
    webhooks.start()
    try:
        listener = make_listener(settings.http.host, settings.http.port)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.http.host, settings.http.port, exc)
        controller.stop()
        webhooks.stop()
        return 1
    server = NoDelayWSGIServer(listener, app, log=_QuietLog(), error_log=_QuietLog())
    server.start()
    log.info("startup done: %d objects kept out of garbage collection", settle_after_startup())
    url = settings.public_url
    print(f"esl-controller API listening on {url}", flush=True)
    if key:
        print("bootstrap API key (shown once, store it now):", flush=True)
        print(key, flush=True)
    stop = stop or Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            gevent.signal_handler(sig, stop.set)
        except ValueError:  # not the main thread (tests)
            pass
    if ready is not None:
        ready.set()
    stop.wait()
    log.info("shutting down")
    controller.stop()
    webhooks.stop()
    server.stop(timeout=5)
    db.close()
    sys.stdout.flush()
    return 0
