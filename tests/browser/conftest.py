"""Browser tests: headless Chromium from the system (``/usr/bin/chromium``, Debian's ``chromium``) driven
by Playwright through its executable path (no browser download), against the real API app served by a
gevent WSGI server on an ephemeral loopback port, with a SQLite database seeded directly.

Each page visited is screenshotted under ``test-artifacts/screenshots/`` for a reviewer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("ESL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
]


def _why_not() -> str | None:
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} is missing: install the Debian package chromium (.ci/apt-packages.txt)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is missing (pip install -e '.[dev]')"
    return None


def pytest_collection_modifyitems(config, items):
    why = _why_not()
    if why is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.skip(reason=why))


class Served:
    """The API app on an ephemeral loopback port."""

    def __init__(self, app, server, settings, api_key: str) -> None:
        self.app = app
        self.server = server
        self.settings = settings
        self.api_key = api_key

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    from api import create_app
    from esl_controller import db
    from esl_controller.config import load_settings
    from esl_controller.security.api_keys import create_key
    from esl_controller.server import NoDelayWSGIServer, make_listener

    data = tmp_path_factory.mktemp("browser-data")
    settings = load_settings(
        None,
        environ={},
        overrides={
            "data_dir": str(data),
            "database": {"url": f"sqlite:///{data / 'db.sqlite'}"},
            "observe": {"analytics_enabled": True},
        },
    )
    database = db.connect(settings.database_url)
    with database.connection_context():
        db.migrate()
        key = create_key("browser-test", settings.org_id).key
    app = create_app(settings)
    server = NoDelayWSGIServer(make_listener("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    try:
        yield Served(app, server, settings, key)
    finally:
        server.stop(timeout=2)
        db.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory, audio_wav):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    args = [
        *CHROMIUM_ARGS,
        f"--user-data-dir={profile}",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={audio_wav}%noloop",
    ]
    with sync_playwright() as pw:
        # launch_persistent_context is Playwright's way to pass a user data dir; one context per module
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=[a for a in args if not a.startswith("--user-data-dir")],
            viewport={"width": 1280, "height": 800},
            permissions=["microphone"],
        )
        context.set_default_timeout(10_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def audio_wav(tmp_path_factory) -> Path:
    """Speech the fake microphone plays (loops): real words from the espeak-ng fixtures, 16 kHz mono."""
    from audio_fixtures import speech

    from esl_controller.media.codecs import silence

    path = tmp_path_factory.mktemp("audio") / "caller.wav"
    pcm = (
        silence(0.8, 16000)
        + speech("Hello, I would like to book a table for two people tonight.", 16000)
        + silence(4.0, 16000)
    )
    write_wav(path, pcm, 16000)
    return path


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


@pytest.fixture
def page(browser, request):
    """A fresh tab with empty session storage; script errors are collected on ``page.errors``."""
    pg = browser.new_page()
    pg.errors = []
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))

    def on_console(msg):
        # HTTP errors the tests provoke on purpose (401, 400, 404, 503) are logged by Chromium as
        # "Failed to load resource"; only script errors count here
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            pg.errors.append(msg.text)

    pg.on("console", on_console)
    yield pg
    pg.close()


class Controlled(Served):
    """The API app with its call ``Controller`` running for real (as ``esl-controller serve`` does):
    web-call WebSocket server and voice pipeline (embedded STT, the assistant's model, embedded TTS)."""

    def __init__(self, app, server, settings, api_key: str, controller) -> None:
        super().__init__(app, server, settings, api_key)
        self.controller = controller

    def api(self, method: str, path: str, body=None) -> tuple[int, object]:
        """A REST call with the API key, over loopback (what a client of the served app sees)."""
        import json
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.api_key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture(scope="module")
def controlled(tmp_path_factory) -> Iterator[Controlled]:
    """Like ``serve``: listener bound first (port 0, so ``public_url`` names the real port), the app, the
    Controller with the voice pipeline started and installed, served by the gevent WSGI server. FreeSWITCH
    is off (web calls only); every media server on an ephemeral port."""
    import dataclasses

    from api import create_app
    from esl_controller import db
    from esl_controller.config import load_settings
    from esl_controller.controller import Controller
    from esl_controller.security.api_keys import create_key
    from esl_controller.server import NoDelayWSGIServer, make_listener

    data = tmp_path_factory.mktemp("controlled-data")
    listener = make_listener("127.0.0.1", 0)
    port = listener.getsockname()[1]
    settings = load_settings(
        None,
        environ={},
        overrides={
            "data_dir": str(data),
            "database": {"url": f"sqlite:///{data / 'db.sqlite'}"},
            "http": {"host": "127.0.0.1", "port": port},
            "freeswitch": {"enabled": False, "outbound_port": 0, "fork_port": 0},
            "media": {
                "pipeline_enabled": True,
                "webcall_port": 0,
                "listen_port": 0,
                "warm_stt": False,
            },
        },
    )
    calls = dataclasses.replace(settings.calls, end_grace_seconds=1.0)
    settings = dataclasses.replace(settings, calls=calls)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    database = db.connect(settings.database_url)
    with database.connection_context():
        db.migrate()
        key = create_key("browser-test", settings.org_id).key
    app = create_app(settings)
    box = app.extensions["esl_controller"].secret_box
    controller = Controller(settings, secret_box=box)
    try:
        controller.start()
        controller.install(app.extensions["esl_controller"])
        assert controller.reconciled.wait(10)
        server = NoDelayWSGIServer(listener, app, log=None, error_log=None)
        server.start()
    except BaseException:
        controller.stop(2)
        listener.close()
        db.close()
        raise
    try:
        yield Controlled(app, server, settings, key, controller)
    finally:
        controller.stop(2)
        server.stop(timeout=2)
        db.close()


@pytest.fixture(scope="module")
def stt():
    """The embedded STT engine must load here, else the page can never hear the caller."""
    from esl_controller.pipeline.providers import registry

    try:
        return registry.build_transcriber(None)
    except Exception as exc:  # noqa: BLE001 - any failure means the embedded engine is not usable here
        pytest.skip(f"embedded STT not available: {exc}")
