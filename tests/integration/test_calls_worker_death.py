"""A whisper worker process SIGKILLed while it transcribes the caller's utterance, mid-call: the in-flight
request fails retryably, the worker is replaced, the utterance is tried once more on the replacement and the
call goes on (the caller is answered, no apology).
The real controller and voice pipeline against the fake FreeSWITCH, a fork client carrying real speech."""

from __future__ import annotations

import os
import signal

import gevent.event
import pytest
from audio_fixtures import speech
from test_calls_support import make_phone_number, run_pipeline_harness
from test_e2e_calls import CALLER, fork_client, next_json, send_speech, set_assistant, until

from esl_controller.db.models import CallMessage

SECOND = "Can I book a table for four on Friday?"


@pytest.fixture
def harness(settings, database, api_key):
    yield from run_pipeline_harness(settings, database, api_key)


class InFlight:
    """Wraps the call's transcriber: tells the test when a request is on its way to the pool."""

    def __init__(self, stt):
        self.stt = stt
        self.name = stt.name
        self.pool = stt.pool
        self.entered = gevent.event.Event()
        self.calls = 0
        self.failures = []

    def transcribe(self, pcm16, sample_rate, *, timeout):
        self.calls += 1
        self.entered.set()
        try:
            return self.stt.transcribe(pcm16, sample_rate, timeout=timeout)
        except Exception as exc:
            self.failures.append(exc)
            raise


def busy_pids(pool):
    alive = set(pool.pids())
    return [w.pid for w in pool._workers if w is not None and w.busy and w.pid in alive]


def test_worker_killed_mid_utterance_is_replaced_and_the_call_goes_on(harness, database):
    phone = make_phone_number(database)
    set_assistant(database, phone)
    leg = harness.place_call(destination="15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_status(session, "in-progress")
    client = fork_client(harness, session)
    next_json(client, "playAudio")  # the first message
    conversation = session.pipeline.conversation
    until(lambda: not session.pipeline.port.playing())

    stt = InFlight(conversation.stt)
    conversation.stt = stt
    pool = stt.pool
    pool.wait_ready(30)
    before = set(pool.pids())
    restarts = pool.restarts

    # the caller speaks; once whisper is working on it, its worker dies
    send_speech(client, CALLER)
    assert stt.entered.wait(15), "the utterance never reached the transcriber"
    until(lambda: busy_pids(pool), timeout=15)
    victims = busy_pids(pool)
    for pid in victims:
        os.kill(pid, signal.SIGKILL)

    # the in-flight request fails retryably; the worker is replaced
    until(lambda: stt.failures, timeout=15)
    assert getattr(stt.failures[0], "retryable", False), stt.failures[0]
    until(lambda: pool.restarts > restarts and len(pool.pids()) == len(before), timeout=30)
    assert not set(victims) & set(pool.pids())

    # the utterance is tried once more on the replacement worker: the call goes on, the caller is answered
    reply = next_json(client, "playAudio", timeout=60)
    assert "technical difficulties" not in (reply["data"].get("textContent") or "")
    assert stt.calls == 2  # the failed utterance was sent again, once
    assert session.is_live and conversation.ended is None
    until(lambda: any(
        m.role == "user" and "table" in (m.message or "").lower()
        for m in CallMessage.select().where(CallMessage.call == session.call_id)
    ), timeout=30)  # fmt: skip
    leg.hangup("NORMAL_CLEARING")
    harness.wait_ended(session)
    call = harness.client.get(f"/call/{session.call_id}").get_json()
    assert call["status"] == "ended" and call["endedReason"] == "customer-ended-call"

    # the replacement worker serves the next call's speech
    pool.wait_ready(30)
    pcm = speech(SECOND, 16000)
    heard = stt.stt.transcribe(pcm, 16000, timeout=30).text.lower()
    assert "table" in heard and "friday" in heard
