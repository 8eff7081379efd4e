"""The command line and the real server process, driven by the official Vapi Python SDK."""

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from esl_controller.cli import main


def run_cli(*args, env=None):
    proc = subprocess.run(
        [sys.executable, "-m", "esl_controller", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    return proc


def test_keys_create_prints_key_alone_on_last_line(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    assert (
        main(
            ["keys", "create", "--name", "ops", "--database-url", url, "--data-dir", str(tmp_path)]
        )
        == 0
    )
    out = capsys.readouterr().out.strip().splitlines()
    key = out[-1]
    assert key.startswith("esk_") and " " not in key and len(key) > 40
    assert main(["keys", "list", "--database-url", url]) == 0
    listing = capsys.readouterr().out
    assert "ops" in listing and key not in listing and "active" in listing
    assert main(["keys", "revoke", key[:12], "--database-url", url]) == 0
    assert main(["keys", "revoke", key[:12], "--database-url", url]) == 1
    capsys.readouterr()
    assert main(["keys", "list", "--database-url", url]) == 0
    assert "revoked" in capsys.readouterr().out


def test_migrate_is_idempotent(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["migrate", "--database-url", url]) == 0
    assert "0001_initial" in capsys.readouterr().out
    assert main(["migrate", "--database-url", url]) == 0
    assert "up to date" in capsys.readouterr().out


def test_config_show_masks_and_errors_name_the_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("freeswitch:\n  password: topsecretpw\nhttp:\n  port: 9999\n")
    proc = run_cli("--config", str(cfg), "config", "show")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["http"]["port"] == 9999 and shown["freeswitch"]["password"] == "***"
    assert "topsecretpw" not in proc.stdout + proc.stderr
    cfg.write_text("http:\n  portt: 1\n")
    proc = run_cli("--config", str(cfg), "config", "show")
    assert proc.returncode == 2 and "http.portt" in proc.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "esl_controller",
            "serve",
            "--data-dir",
            str(tmp_path / "var"),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith("esk_"):
            break
    assert lines and lines[-1].startswith("esk_"), (
        lines,
        proc.stderr.read() if proc.poll() is not None else "",
    )
    assert f"http://127.0.0.1:{port}" in lines[0]
    yield f"http://127.0.0.1:{port}", lines[-1], proc
    proc.terminate()
    proc.wait(timeout=10)


def test_serve_bootstrap_key_and_sdk_round_trip(server):
    vapi = pytest.importorskip("vapi")
    base, key, proc = server
    client = vapi.Vapi(token=key, base_url=base)
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    created = client.assistants.create(
        name="SDK assistant",
        first_message="Hello from the SDK",
        model={"provider": "openai", "model": "gpt-4o-mini", "max_tokens": 100},
        voice={"provider": "11labs", "voice_id": "rachel"},
    )
    assert created.id and created.name == "SDK assistant"
    assert created.model is not None and created.voice is not None  # discriminators echoed
    listed = client.assistants.list(limit=5.0, created_at_gt=before)
    assert [a.id for a in listed] == [created.id]
    assert (
        client.assistants.list(created_at_gt=datetime.now(timezone.utc) + timedelta(hours=1)) == []
    )
    got = client.assistants.get(created.id)
    assert got.first_message == "Hello from the SDK"
    updated = client.assistants.update(created.id, first_message="Changed")
    assert updated.first_message == "Changed" and updated.name == "SDK assistant"
    deleted = client.assistants.delete(created.id)
    assert deleted.id == created.id
    with pytest.raises(vapi.core.api_error.ApiError) as err:
        client.assistants.get(created.id)
    assert err.value.status_code == 404
    calls = client.calls.list(limit=10)
    assert calls == []
    bad = vapi.Vapi(token="esk_wrong", base_url=base)
    with pytest.raises(vapi.core.api_error.ApiError) as err:
        bad.assistants.list()
    assert err.value.status_code == 401
    assert proc.poll() is None
