"""``esl-controller calls list|show|hangup|control`` against a running API + controller."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_calls_support import WAIT, make_phone_number, run_harness


@pytest.fixture
def harness(settings, database, api_key):
    yield from run_harness(settings, database, api_key)


@pytest.fixture
def server(harness):
    from gevent.pywsgi import WSGIServer

    srv = WSGIServer(("127.0.0.1", 0), harness.app, log=None)
    srv.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.stop(timeout=2)


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "esl_controller",
        *args[:2],
        "--database-url",
        settings.database_url,
        "--data-dir",
        settings.data_dir,
        *args[2:],
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin"})


def test_calls_cli(harness, database, server, api_key):
    make_phone_number(database)
    leg = harness.place_call(destination="15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_status(session, "in-progress")
    s = harness.settings

    out = cli(s, "calls", "list", "--status", "in-progress")
    assert out.returncode == 0, out.stderr
    assert session.call_id in out.stdout and "inboundPhoneCall" in out.stdout
    assert session.call_id not in cli(s, "calls", "list", "--status", "ended").stdout

    out = cli(s, "calls", "show", session.call_id)
    shown = json.loads(out.stdout)
    assert shown["status"] == "in-progress"
    assert any(e["kind"] == "channel.answer" for e in shown["events"])

    out = cli(
        s,
        "calls",
        "control",
        session.call_id,
        "--url",
        server,
        "--api-key",
        api_key,
        "--json",
        '{"type": "dtmf", "digits": "42"}',
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert harness.peer.commands.wait_for(lambda c: "uuid_send_dtmf" in c.line, WAIT)

    out = cli(
        s,
        "calls",
        "control",
        session.call_id,
        "--url",
        server,
        "--api-key",
        api_key,
        "--json",
        '{"type": "dtmf", "digits": "x;y"}',
    )
    assert out.returncode == 1 and "digits" in out.stdout

    out = cli(s, "calls", "hangup", session.call_id, "--url", server, "--api-key", api_key)
    assert out.returncode == 0, out.stdout + out.stderr
    harness.wait_ended(session)
    assert harness.row(session.call_id).ended_reason == "manually-canceled"
    assert cli(s, "calls", "show", "6b0e8d4c-3a9b-4f1e-9c2d-1a2b3c4d5e6f").returncode == 1
    out = cli(s, "calls", "hangup", session.call_id, "--url", server)
    assert out.returncode == 2 and "API key" in out.stderr
