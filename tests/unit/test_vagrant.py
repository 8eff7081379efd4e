"""vagrant/: static checks that run anywhere, and opt-in checks against a real FreeSWITCH.

The static checks need `shellcheck` and `ruby` (Debian packages; see .ci/apt-packages.txt) and
skip with the reason when they are missing. The real-FreeSWITCH checks run only when
ESL_REAL_FREESWITCH=<host> is set (ESL_REAL_FREESWITCH_PORT, ESL_REAL_FREESWITCH_PASSWORD).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VAGRANT = ROOT / "vagrant"
SCRIPTS = sorted(VAGRANT.glob("*.sh"))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} is not installed (apt-get install {name}; listed in .ci/apt-packages.txt)"
        )
    return path


def test_expected_files() -> None:
    for name in ("Vagrantfile", "provision.sh", "smoke.sh", "esl-controller.service", "README.md"):
        assert (VAGRANT / name).is_file(), name
    for script in SCRIPTS:
        assert os.access(script, os.X_OK), f"{script.name} is not executable"
        assert script.read_text().startswith("#!/usr/bin/env bash\n")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script: Path) -> None:
    shellcheck = _tool("shellcheck")
    res = subprocess.run(
        [shellcheck, "--shell=bash", str(script)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_shellcheck_can_fail(tmp_path: Path) -> None:
    shellcheck = _tool("shellcheck")
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    res = subprocess.run([shellcheck, str(bad)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0


def test_vagrantfile_is_valid_ruby() -> None:
    ruby = _tool("ruby")
    res = subprocess.run(
        [ruby, "-c", str(VAGRANT / "Vagrantfile")], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0 and "Syntax OK" in res.stdout, res.stdout + res.stderr


def test_ruby_check_can_fail(tmp_path: Path) -> None:
    ruby = _tool("ruby")
    bad = tmp_path / "Vagrantfile"
    bad.write_text('Vagrant.configure("2") do |config|\n  config.vm.box = "x"\n')
    res = subprocess.run([ruby, "-c", str(bad)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0


def test_vagrantfile_takes_the_token_from_the_environment() -> None:
    text = (VAGRANT / "Vagrantfile").read_text()
    assert 'ENV.fetch("SIGNALWIRE_TOKEN"' in text
    assert "debian/bookworm64" in text
    assert "pat_" not in text.replace("pat_...", "")


def test_no_token_written_to_a_command_line() -> None:
    text = (VAGRANT / "provision.sh").read_text()
    # the token goes to a root-only netrc file; curl reads it from there
    assert "--netrc-file" in text
    assert "SIGNALWIRE_TOKEN}@" not in text and "--http-password" not in text
    assert "-u signalwire" not in text


def test_service_unit() -> None:
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for line in (VAGRANT / "esl-controller.service").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
            continue
        key, _, value = line.partition("=")
        sections[current][key] = value
    svc = sections["Service"]
    assert svc["ExecStart"].endswith("esl-controller serve")
    assert svc["User"] == "esl-controller"
    assert "CAP_NET_RAW" in svc["AmbientCapabilities"]
    assert svc["EnvironmentFile"].startswith("/etc/esl-controller/")
    assert "freeswitch.service" in sections["Unit"]["After"]
    assert sections["Install"]["WantedBy"] == "multi-user.target"


def test_provision_installs_every_conf_file() -> None:
    """Each freeswitch_conf XML file (except the gateway template) is installed by provision.sh."""
    text = (VAGRANT / "provision.sh").read_text()
    conf = ROOT / "freeswitch_conf"
    for path in conf.rglob("*.xml"):
        ET.parse(path)
        rel = path.relative_to(conf)
        assert rel.name in text or f"{rel.parent.as_posix()}/*.xml" in text, rel


# --- opt-in: a real FreeSWITCH ---------------------------------------------------------------

REAL_HOST = os.environ.get("ESL_REAL_FREESWITCH", "")
real = pytest.mark.skipif(
    not REAL_HOST, reason="real FreeSWITCH tests are opt-in: set ESL_REAL_FREESWITCH=<host>"
)


class _Esl:
    """A minimal inbound ESL client for these checks (the package's client is not used on purpose:
    this checks the box, not our code)."""

    def __init__(self, host: str, port: int, password: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""
        head, _ = self._frame()
        assert head.get("Content-Type") == "auth/request", head
        self.sock.sendall(f"auth {password}\n\n".encode())
        head, _ = self._frame()
        assert head.get("Reply-Text") == "+OK accepted", head

    def _frame(self) -> tuple[dict[str, str], bytes]:
        while b"\n\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("FreeSWITCH closed the connection")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\n\n", 1)
        head = dict(line.split(": ", 1) for line in raw.decode().splitlines() if ": " in line)
        length = int(head.get("Content-Length", "0"))
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("FreeSWITCH closed the connection")
            self.buf += chunk
        body, self.buf = self.buf[:length], self.buf[length:]
        return head, body

    def api(self, cmd: str) -> str:
        self.sock.sendall(f"api {cmd}\n\n".encode())
        while True:
            head, body = self._frame()
            if head.get("Content-Type") == "api/response":
                return body.decode()

    def close(self) -> None:
        try:
            self.sock.sendall(b"exit\n\n")
        finally:
            self.sock.close()


@pytest.fixture
def esl() -> Iterator[_Esl]:
    client = _Esl(
        REAL_HOST,
        int(os.environ.get("ESL_REAL_FREESWITCH_PORT", "8021")),
        os.environ.get("ESL_REAL_FREESWITCH_PASSWORD", "ClueCon"),
    )
    yield client
    client.close()


@real
@pytest.mark.freeswitch
def test_real_mod_audio_fork_loaded(esl: _Esl) -> None:
    assert esl.api("module_exists mod_audio_fork").strip() == "true"
    assert esl.api("module_exists mod_event_socket").strip() == "true"


@real
@pytest.mark.freeswitch
def test_real_dialplan_variables(esl: _Esl) -> None:
    host = esl.api("global_getvar esl_controller_host").strip()
    port = esl.api("global_getvar esl_controller_port").strip()
    assert host and host != "_undef_"
    assert port.isdigit()


@real
@pytest.mark.freeswitch
def test_real_acl_admits_loopback_controller(esl: _Esl) -> None:
    assert esl.api("acl 127.0.0.1 esl_controller_clients").strip() == "true"
