"""The doctor against the fake FreeSWITCH peer and a temporary data directory: good password, bad
password, ACL rejection, a missing module, an unreachable switch, ports held by others, a bad key file
mode, an unmigrated database; in-process (``main([...])``) and through ``scripts/esl-doctor``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from esl_controller import db
from esl_controller.testing import FreeSwitchPeer

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-pw"


@pytest.fixture
def peer():
    p = FreeSwitchPeer(password=PASSWORD)
    loaded = {"mod_event_socket", "mod_sofia", "mod_audio_fork"}
    # the fake switch has no module_exists; answer like FreeSWITCH does ("true"/"false")
    p.switch._api_module_exists = lambda args: "true" if args.strip() in loaded else "false"
    p.loaded = loaded
    p.start()
    yield p
    p.stop()


@pytest.fixture
def restore_db():
    """main() binds the shared database proxy; put the test's database back afterwards."""
    from test_cli_ops import keep_logging

    before = db.database.obj
    restore = keep_logging()
    yield
    restore()
    if before is not None and db.database.obj is not before:
        db.database.initialize(before)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path: Path, settings, **freeswitch) -> Path:
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    key = data_dir / "secret.key"
    if not key.exists():
        key.write_text("x" * 44 + "\n")
        key.chmod(0o600)
    fs = {
        "enabled": True,
        "host": "127.0.0.1",
        "password": PASSWORD,
        "outbound_port": free_port(),
        "fork_port": free_port(),
        **freeswitch,
    }
    cfg = {
        "data_dir": str(data_dir),
        "database": {"url": settings.database_url},
        "http": {"port": free_port()},
        "freeswitch": fs,
    }
    path = tmp_path / "doctor.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def doctor(capsys, cfg: Path, *extra: str) -> tuple[int, dict[str, tuple[str, str]], str]:
    from esl_controller.cli import main

    rc = main(["doctor", "--config", str(cfg), "--timeout", "3", "--min-free-mb", "0", *extra])
    out = capsys.readouterr().out
    lines = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0] in ("PASS", "WARN", "FAIL", "SKIP"):
            lines[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "")
    return rc, lines, out


def test_all_good(tmp_path, settings, database, peer, capsys, restore_db):
    cfg = write_config(tmp_path, settings, port=peer.port)
    rc, lines, out = doctor(capsys, cfg)
    assert lines["database"][0] == "PASS", out
    assert lines["esl.connect"][0] == "PASS"
    assert lines["esl.auth"][0] == "PASS"
    for module in ("mod_event_socket", "mod_sofia", "mod_audio_fork"):
        assert lines[module] == ("PASS", "loaded")
    for port in ("port.http", "port.outbound", "port.fork"):
        assert lines[port][0] == "PASS" and "free" in lines[port][1]
    assert lines["disk"][0] == "PASS"
    assert lines["secret-key"][0] == "PASS" and "0600" in lines["secret-key"][1]
    assert PASSWORD not in out
    # the capture line depends on the machine; it can only fail when capture is enabled
    assert lines["capture"][0] in ("PASS", "WARN")
    assert rc == 0
    assert out.rstrip().splitlines()[-1].endswith(" 0 failed")
    assert any("module_exists mod_audio_fork" in line for line in peer.commands.lines())


def test_bad_password(tmp_path, settings, database, peer, capsys, restore_db):
    cfg = write_config(tmp_path, settings, port=peer.port, password="wrong")
    rc, lines, out = doctor(capsys, cfg, "--only", "esl")
    assert rc == 1
    assert lines["esl.connect"][0] == "PASS"
    assert lines["esl.auth"][0] == "FAIL" and "password refused" in lines["esl.auth"][1]
    assert "mod_audio_fork" not in lines
    assert "wrong" not in out


def test_acl_rejection(tmp_path, settings, database, peer, capsys, restore_db):
    peer.reject_connections = True
    cfg = write_config(tmp_path, settings, port=peer.port)
    rc, lines, out = doctor(capsys, cfg, "--only", "esl")
    assert rc == 1
    assert lines["esl.acl"][0] == "FAIL" and "acl" in lines["esl.acl"][1].lower()
    assert "esl.auth" not in lines


def test_module_missing(tmp_path, settings, database, peer, capsys, restore_db):
    peer.loaded.discard("mod_audio_fork")
    cfg = write_config(tmp_path, settings, port=peer.port)
    rc, lines, out = doctor(capsys, cfg, "--only", "esl")
    assert rc == 1
    assert lines["mod_sofia"][0] == "PASS"
    assert lines["mod_audio_fork"][0] == "FAIL" and "not loaded" in lines["mod_audio_fork"][1]


def test_switch_unreachable_and_disabled(tmp_path, settings, database, capsys, restore_db):
    cfg = write_config(tmp_path, settings, port=free_port())
    rc, lines, _ = doctor(capsys, cfg, "--only", "esl")
    assert rc == 1 and lines["esl.connect"][0] == "FAIL"

    # a listener that accepts but never greets: the check gives up after its timeout
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        cfg = write_config(tmp_path, settings, port=silent.getsockname()[1])
        from esl_controller.cli import main

        rc = main(["doctor", "--config", str(cfg), "--only", "esl", "--timeout", "0.5"])
        out = capsys.readouterr().out
        assert rc == 1
        assert "FAIL  esl.auth" in out and "no auth/request" in out
    finally:
        silent.close()

    cfg = write_config(tmp_path, settings, enabled=False)
    rc, lines, _ = doctor(capsys, cfg, "--only", "esl", "--only", "ports")
    assert rc == 0
    assert lines["esl"][0] == "SKIP" and lines["port.fork"][0] == "SKIP"


def test_ports_in_use(tmp_path, settings, database, peer, capsys, restore_db):
    mine = socket.socket()
    mine.bind(("127.0.0.1", 0))
    mine.listen(1)
    other = subprocess.Popen(
        [sys.executable, "-c", "import socket,sys;s=socket.socket();s.bind(('127.0.0.1',0));"
         "s.listen(1);print(s.getsockname()[1],flush=True);sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        other_port = int(other.stdout.readline())
        cfg = write_config(
            tmp_path,
            settings,
            port=peer.port,
            outbound_port=mine.getsockname()[1],
            fork_port=other_port,
        )
        rc, lines, out = doctor(capsys, cfg, "--only", "ports")
        assert lines["port.outbound"][0] == "PASS" and "this process" in lines["port.outbound"][1]
        assert lines["port.fork"][0] == "FAIL", out
        assert f"pid {other.pid}" in lines["port.fork"][1]
        assert rc == 1
    finally:
        mine.close()
        other.stdin.close()
        other.wait(timeout=10)


def test_key_mode_and_unmigrated_database(tmp_path, settings, database, capsys, restore_db):
    cfg = write_config(tmp_path, settings, enabled=False)
    key = Path(settings.data_dir) / "secret.key"
    key.chmod(0o644)
    rc, lines, _ = doctor(capsys, cfg, "--only", "secret-key")
    assert rc == 1
    assert lines["secret-key"][0] == "FAIL" and "chmod 600" in lines["secret-key"][1]

    fresh = tmp_path / "fresh.db"
    fresh.touch()  # an empty SQLite file: reachable, nothing migrated
    conf = yaml.safe_load(cfg.read_text())
    conf["database"]["url"] = f"sqlite:///{fresh}"
    cfg.write_text(yaml.safe_dump(conf))
    rc, lines, _ = doctor(capsys, cfg, "--only", "database")
    assert rc == 1
    assert lines["database"][0] == "FAIL" and "esl-controller migrate" in lines["database"][1]

    conf["database"]["url"] = f"sqlite:///{tmp_path / 'missing.db'}"
    cfg.write_text(yaml.safe_dump(conf))
    rc, lines, _ = doctor(capsys, cfg, "--only", "database")
    assert rc == 1 and "no database file" in lines["database"][1]
    assert not (tmp_path / "missing.db").exists()  # the doctor never creates one


def test_low_disk_warns_and_json(tmp_path, settings, database, capsys, restore_db):
    import json

    cfg = write_config(tmp_path, settings, enabled=False)
    from esl_controller.cli import main

    rc = main(["doctor", "--config", str(cfg), "--only", "disk", "--min-free-mb", str(2**40), "--json"])  # fmt: skip
    results = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert (
        results == [{"name": "disk", "status": "WARN", "detail": results[0]["detail"]}]
        and "below" in results[0]["detail"]
    )

    assert main(["doctor", "--config", str(cfg), "--timeout", "0"]) == 2


def test_script_against_peer(tmp_path, settings, database, peer):
    """scripts/esl-doctor as a subprocess (the peer answers from this process)."""
    cfg = write_config(tmp_path, settings, port=peer.port)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    script = ROOT / "scripts" / "esl-doctor"
    ok = subprocess.run(
        [str(script), "--config", str(cfg), "--only", "esl", "--timeout", "3"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS  mod_audio_fork" in ok.stdout

    peer.loaded.discard("mod_sofia")
    bad = subprocess.run(
        [str(script), "--config", str(cfg), "--only", "esl", "--timeout", "3"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "FAIL  mod_sofia" in bad.stdout
