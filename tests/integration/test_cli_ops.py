"""On-box commands driven in-process (``main([...])``) against the test database: ``pcap``, ``monitor``,
``webhooks retry|replay``, ``logs tail`` (``--follow`` as a subprocess stopped with Ctrl-C), and the
``capture`` config section."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import gevent
import pytest
from test_pcap_route import pcap_bytes
from test_webhook_delivery import Receiver

from esl_controller import db
from esl_controller.db.fields import utcnow
from esl_controller.db.models import Assistant, Call, CallEvent, WebhookAttempt, WebhookJob

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(settings, database, capsys):
    """``run(*argv) -> (rc, stdout, stderr)`` through ``esl_controller.cli.main``; the shared database
    proxy and the logging setup are put back afterwards (main binds and configures them)."""
    from esl_controller.cli import main

    before = db.database.obj
    saved = keep_logging()

    def go(*argv: str) -> tuple[int, str, str]:
        rc = main(
            [
                *argv,
                "--database-url",
                settings.database_url,
                "--data-dir",
                settings.data_dir,
            ]
        )
        out = capsys.readouterr()
        return rc, out.out, out.err

    yield go
    saved()
    if db.database.obj is not before:
        db.database.initialize(before)


def keep_logging():
    """Save the package logger's handlers, level and propagation; return a function restoring them."""
    import logging

    from esl_controller import logs

    root = logging.getLogger("esl_controller")
    state = (list(root.handlers), root.level, root.propagate, logs._installed)

    def restore() -> None:
        root.handlers[:] = state[0]
        root.setLevel(state[1])
        root.propagate = state[2]
        logs._installed = state[3]

    return restore


def make_call(database, **fields) -> str:
    fields.setdefault("org_id", "o")
    fields.setdefault("type", "inboundPhoneCall")
    with database.connection_context():
        return Call.create(**fields).id


# --------------------------------------------------------------------------------------------- pcap


def test_pcap_copy(run, database, settings, tmp_path):
    call_id = make_call(database, status="ended")
    settings.pcap_dir.mkdir(parents=True)
    (settings.pcap_dir / f"{call_id}.pcap").write_bytes(pcap_bytes())

    out_file = tmp_path / "out.pcap"
    rc, out, _ = run("pcap", call_id, "--output", str(out_file))
    assert rc == 0 and str(out_file) in out
    assert out_file.read_bytes() == pcap_bytes()

    target_dir = tmp_path / "dir"
    target_dir.mkdir()
    rc, _, _ = run("pcap", call_id, "-o", str(target_dir))
    assert rc == 0 and (target_dir / f"{call_id}.pcap").read_bytes() == pcap_bytes()


def test_pcap_errors(run, database, settings, tmp_path):
    call_id = make_call(database, status="ended")
    rc, _, err = run("pcap", call_id, "--output", str(tmp_path / "x.pcap"))
    assert rc == 1 and "has no packet capture" in err
    assert not (tmp_path / "x.pcap").exists()

    rc, _, err = run("pcap", str(uuid.uuid4()))
    assert rc == 1 and "not found" in err

    rc, _, err = run("pcap", "../../etc/passwd")
    assert rc == 2 and "must be a UUID" in err


# ------------------------------------------------------------------------------------------ monitor


def seed_monitor(database) -> dict[str, str]:
    now = utcnow()
    with database.connection_context():
        asst = Assistant.create(org_id="o", name="Support bot")
        live = Call.create(
            org_id="o",
            type="inboundPhoneCall",
            status="in-progress",
            assistant_id=asst.id,
            created_at=now - timedelta(seconds=70),
            started_at=now - timedelta(seconds=65),
        )
        ringing = Call.create(
            org_id="o",
            type="outboundPhoneCall",
            status="ringing",
            created_at=now - timedelta(seconds=3),
            data={"assistant": {"name": "Transient one"}},
        )
        recent = Call.create(
            org_id="o",
            type="webCall",
            status="ended",
            created_at=now - timedelta(seconds=40),
            started_at=now - timedelta(seconds=40),
            ended_at=now - timedelta(seconds=10),
        )
        old = Call.create(
            org_id="o",
            type="webCall",
            status="ended",
            created_at=now - timedelta(hours=2),
            ended_at=now - timedelta(hours=1),
        )
        for turn, (eos, out) in enumerate([(1.0, 2.5), (10.0, 10.42)]):
            CallEvent.create(
                call=live.id,
                kind="turn-timing",
                source="pipeline",
                data={"turn": turn, "endOfSpeech": eos, "firstAudioOut": out},
            )
        CallEvent.create(call=live.id, kind="transcript", data={"text": "hello"})
    return {"live": live.id, "ringing": ringing.id, "recent": recent.id, "old": old.id}


def test_monitor_once(run, database):
    ids = seed_monitor(database)
    rc, out, _ = run("monitor", "--once", "--width", "140")
    assert rc == 0
    lines = out.splitlines()
    assert "2 live call(s) (1 in-progress, 1 ringing)" in lines[0]
    assert lines[1].split() == ["ID", "TYPE", "STATUS", "DURATION", "TURN", "ASSISTANT"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == [ids["live"], ids["ringing"], ids["recent"]]  # old ended call not listed
    live = rows[ids["live"]].split()
    assert live[1:4] == ["inbound", "in-progress", "1:05"] or live[3] == "1:06"
    assert live[4] == "420ms" and " ".join(live[5:]) == "Support bot"
    assert rows[ids["ringing"]].split()[4] == "-"
    assert "Transient one" in rows[ids["ringing"]]
    assert rows[ids["recent"]].split()[3] == "0:30"

    rc, out, _ = run("monitor", "--once", "--recent", "0", "--width", "60")
    assert rc == 0
    assert ids["recent"] not in out
    assert all(len(line) <= 60 for line in out.splitlines())
    assert ids["live"][:7] + "…" in out and ids["live"] not in out  # ids shortened to fit

    rc, _, err = run("monitor", "--once", "--interval", "0")
    assert rc == 2 and "--interval" in err


def test_monitor_render_empty():
    from esl_controller.monitor import render

    lines = render([], utcnow(), 80)
    assert "0 live call(s)" in lines[0] and lines[-1] == "(no calls)"


# ----------------------------------------------------------------------------------------- webhooks


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def failed_job(database, url: str) -> tuple[str, str]:
    """A job delivered once to ``url`` with a budget of one attempt: (job id, attempt id)."""
    from cryptography.fernet import Fernet

    from esl_controller.security.secrets_box import SecretBox
    from esl_controller.webhooks import outbox
    from esl_controller.webhooks.delivery import Deliverer, DeliverySettings

    with database.connection_context():
        with db.database.atomic():
            job = outbox.enqueue(
                "status-update",
                {"message": {"type": "status-update", "status": "ended"}},
                {"url": url},
                str(uuid.uuid4()),
                max_attempts=1,
            )
        Deliverer(DeliverySettings(workers=1), SecretBox(Fernet.generate_key())).run_once()
        attempt = WebhookAttempt.get(WebhookAttempt.job == job.id)
    return job.id, attempt.id


def test_webhooks_retry(run, database, receiver):
    down = receiver(script=lambda seen, n: (503, [], b"down"))
    job_id, _ = failed_job(database, down.url + "/hook")
    with database.connection_context():
        assert WebhookJob.get_by_id(job_id).status == "failed"

    rc, out, _ = run("webhooks", "retry", job_id)
    assert rc == 0 and "pending again" in out
    with database.connection_context():
        job = WebhookJob.get_by_id(job_id)
    assert job.status == "pending" and job.max_attempts == 2

    rc, _, err = run("webhooks", "retry", job_id)
    assert rc == 1 and "is pending; only failed or skipped" in err

    rc, _, err = run("webhooks", "retry", str(uuid.uuid4()))
    assert rc == 1 and "not found" in err
    rc, _, err = run("webhooks", "retry", "12")
    assert rc == 2 and "must be a UUID" in err


def test_webhooks_replay(run, database, receiver):
    flaky = receiver(script=lambda seen, n: (500, [], b"no") if n == 1 else (200, [], b"ok"))
    job_id, attempt_id = failed_job(database, flaky.url + "/hook")

    rc, out, err = run("webhooks", "replay", attempt_id)
    assert rc == 0, err
    assert "HTTP 200" in out and "#2" in out
    assert len(flaky.requests) == 2
    assert flaky.requests[1].body == flaky.requests[0].body
    with database.connection_context():
        rows = list(WebhookAttempt.select().where(WebhookAttempt.job == job_id).order_by(WebhookAttempt.number))  # fmt: skip
        assert [(r.number, r.replay, r.status_code) for r in rows] == [(1, False, 500), (2, True, 200)]  # fmt: skip
        assert WebhookJob.get_by_id(job_id).status == "failed"  # a replay leaves the job alone

    rc, _, err = run("webhooks", "replay", str(uuid.uuid4()))
    assert rc == 1 and "not found" in err
    rc, _, err = run("webhooks", "replay", attempt_id, "--timeout", "0")
    assert rc == 2


def test_webhooks_replay_target_down(run, database, receiver):
    down = receiver(script=lambda seen, n: (503, [], b"down"))
    _, attempt_id = failed_job(database, down.url + "/hook")
    rc, out, _ = run("webhooks", "replay", attempt_id)
    assert rc == 1 and "HTTP 503" in out


# --------------------------------------------------------------------------------------------- logs


def seed_logs(database) -> tuple[str, str]:
    now = utcnow()
    a = make_call(database, status="ended")
    b = make_call(database, status="ended")
    with database.connection_context():
        CallEvent.create(call=a, at=now - timedelta(hours=3), kind="status-update", data={"status": "ringing"})  # fmt: skip
        CallEvent.create(call=a, at=now - timedelta(minutes=5), kind="transcript", data={"text": "hello there"})  # fmt: skip
        CallEvent.create(call=b, at=now - timedelta(minutes=4), kind="provider-error", level="ERROR", data={"error": "tts timed out"})  # fmt: skip
        CallEvent.create(call=a, at=now - timedelta(minutes=3), kind="frames-dropped", level="WARNING", data={"count": 3})  # fmt: skip
    return a, b


def test_logs_tail_filters(run, database):
    a, b = seed_logs(database)
    rc, out, _ = run("logs", "tail")
    assert rc == 0
    lines = out.splitlines()
    assert [ln.split()[3] for ln in lines] == ["status-update", "transcript", "provider-error", "frames-dropped"]  # fmt: skip
    stamp, level, call, kind, *message = lines[1].split()
    assert stamp.endswith("Z") and level == "INFO" and call == a and kind == "transcript"
    assert " ".join(message) == "hello there"
    assert lines[3].endswith('{"count":3}')

    assert [ln.split()[3] for ln in run("logs", "tail", "--call", b)[1].splitlines()] == ["provider-error"]  # fmt: skip
    assert [ln.split()[1] for ln in run("logs", "tail", "--level", "warn")[1].splitlines()] == ["ERROR", "WARNING"]  # fmt: skip
    assert [ln.split()[3] for ln in run("logs", "tail", "--kind", "provider-*")[1].splitlines()] == ["provider-error"]  # fmt: skip
    assert len(run("logs", "tail", "--since", "1h")[1].splitlines()) == 3
    assert len(run("logs", "tail", "-n", "2")[1].splitlines()) == 2
    since = (utcnow() - timedelta(minutes=3, seconds=30)).isoformat()
    assert [ln.split()[3] for ln in run("logs", "tail", "--since", since)[1].splitlines()] == ["frames-dropped"]  # fmt: skip


def test_logs_tail_bad_input(run, database):
    seed_logs(database)
    for argv, code, text in (
        (("--call", "nope"), 2, "must be a UUID"),
        (("--call", str(uuid.uuid4())), 1, "not found"),
        (("--level", "LOUD"), 2, "--level"),
        (("--since", "yesterday"), 2, "--since"),
        (("--interval", "0"), 2, "--interval"),
    ):
        rc, _, err = run("logs", "tail", *argv)
        assert rc == code and text in err, (argv, err)


def test_logs_tail_webhooks(run, database, receiver):
    down = receiver(script=lambda seen, n: (503, [], b"down"))
    job_id, _ = failed_job(database, down.url + "/hook")
    rc, out, _ = run("logs", "tail", "--webhooks")
    assert rc == 0
    (line,) = out.splitlines()
    assert line.split()[1] == "ERROR" and line.split()[3] == "webhook.status-update"
    assert "HTTP 503" in line and down.url in line
    assert run("logs", "tail")[1] == ""
    assert run("logs", "tail", "--webhooks", "--level", "ERROR")[1].strip() == line


def test_logs_tail_follow(settings, database):
    """--follow as a subprocess: old lines, then a line written later, then Ctrl-C exits 0."""
    a, _ = seed_logs(database)
    proc = subprocess.Popen(
        [
            sys.executable, str(ROOT / "scripts" / "esl-logs"), "--follow", "--interval", "0.1",
            "--call", a, "--database-url", settings.database_url, "--data-dir", settings.data_dir,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        with gevent.Timeout(30):
            first = [proc.stdout.readline() for _ in range(3)]
            assert [ln.split()[3] for ln in first] == ["status-update", "transcript", "frames-dropped"]  # fmt: skip
            with database.connection_context():
                CallEvent.create(call=a, kind="hangup", data={"message": "caller hung up"})
            later = proc.stdout.readline()
            assert later.split()[3] == "hangup" and later.rstrip().endswith("caller hung up")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------- config


def test_capture_config_section(tmp_path):
    from esl_controller.config import ConfigError, load_settings

    s = load_settings(None, environ={})
    assert s.capture.enabled is False and s.pcap_dir == Path("./var") / "pcap"
    s = load_settings(
        None,
        environ={
            "ESL_CONTROLLER_CAPTURE__ENABLED": "true",
            "ESL_CONTROLLER_CAPTURE__SIP_PORTS": "5060,5080,5090",
            "ESL_CONTROLLER_CAPTURE__MAX_BYTES": "1000000",
        },
        overrides={"capture": {"interface": "eth1", "max_concurrent": 3}},
    )
    c = s.capture
    assert (c.enabled, c.sip_ports, c.max_bytes, c.interface, c.max_concurrent) == (
        True, (5060, 5080, 5090), 1_000_000, "eth1", 3,
    )  # fmt: skip
    for bad in ({"sip_ports": [70000]}, {"max_concurrent": 0}, {"max_bytes": -1}, {"nope": 1}):
        with pytest.raises(ConfigError, match="capture"):
            load_settings(None, environ={}, overrides={"capture": bad})
