"""scripts/: every script is executable, has a shebang and ``--help``, is a thin wrapper over the
package, and works as a subprocess against a temporary SQLite database; shell scripts pass shellcheck."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in (ROOT / "scripts").iterdir() if p.is_file())
SHELL_SCRIPTS = [p for p in SCRIPTS if p.read_text().split("\n", 1)[0].endswith(("bash", "sh"))]
EXPECTED = {"esl-doctor", "esl-monitor", "esl-webhooks", "esl-logs", "esl-pcap"}


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    # the scripts run with the venv's python first on PATH, as on an installed box
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory) -> tuple[str, str]:
    data = tmp_path_factory.mktemp("scripts")
    url = f"sqlite:///{data / 'esl.db'}"
    done = run(sys.executable, "-m", "esl_controller", "migrate", "--database-url", url)
    assert done.returncode == 0, done.stderr
    return url, str(data)


def test_expected_scripts_exist():
    assert EXPECTED <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_shape(script: Path):
    text = script.read_text()
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    assert text.startswith("#!/usr/bin/env "), script.name
    if script not in SHELL_SCRIPTS:
        # a thin wrapper: imports the package and hands argv to its main
        code = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        assert any(ln.startswith("from esl_controller") for ln in code)
        assert "sys.argv[1:]" in text
        assert len(text.splitlines()) < 30


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help(script: Path):
    done = run(str(script), "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {script.name}")


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script: Path):
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (listed in .ci/apt-packages.txt)")
    done = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_bad_usage_exits_2():
    done = run(str(ROOT / "scripts" / "esl-webhooks"), "retry")
    assert done.returncode == 2 and "usage: esl-webhooks retry" in done.stderr
    done = run(str(ROOT / "scripts" / "esl-monitor"), "--interval", "soon")
    assert done.returncode == 2


def test_scripts_against_sqlite(sqlite_db, tmp_path):
    url, data = sqlite_db
    common = ("--database-url", url, "--data-dir", data)
    s = ROOT / "scripts"

    done = run(str(s / "esl-monitor"), "--once", "--width", "100", *common)
    assert done.returncode == 0, done.stderr
    assert "0 live call(s)" in done.stdout and "(no calls)" in done.stdout

    done = run(str(s / "esl-logs"), *common)
    assert done.returncode == 0 and done.stdout == ""

    ghost = str(uuid.uuid4())
    done = run(str(s / "esl-pcap"), ghost, "-o", str(tmp_path / "x.pcap"), *common)
    assert done.returncode == 1 and f"call {ghost} not found" in done.stderr

    done = run(str(s / "esl-webhooks"), "retry", ghost, *common)
    assert done.returncode == 1 and "not found" in done.stderr
    done = run(str(s / "esl-webhooks"), "replay", "x", *common)
    assert done.returncode == 2 and "must be a UUID" in done.stderr

    done = run(str(s / "esl-doctor"), "--only", "database", "--only", "disk", "--min-free-mb", "0", *common)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS  database" in done.stdout and "PASS  disk" in done.stdout
