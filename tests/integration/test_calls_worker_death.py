"""A whisper worker process SIGKILLed while it transcribes the caller's utterance, mid-call: the in-flight
request fails retryably, the worker is replaced, and the call ends with a clear pipeline-error reason
after an apology (the conversation does not retry the utterance).
The real controller and voice pipeline against the fake FreeSWITCH, a fork client carrying real speech."""

from __future__ import annotations

import dataclasses
import os
import signal

import gevent.event
import pytest
from audio_fixtures import speech
from test_calls_support import make_phone_number, run_harness
from test_e2e_calls import CALLER, fork_client, next_json, send_speech, set_assistant, until

SECOND = "Can I book a table for four on Friday?"


@pytest.fixture
def harness(settings, database, api_key):
    media = dataclasses.replace(settings.media, webcall_port=0, listen_port=0, warm_stt=False)
    yield from run_harness(
        dataclasses.replace(settings, media=media), database, api_key, pipeline=True
    )


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


def test_worker_killed_mid_utterance_is_replaced_and_the_call_ends_clearly(harness, database):
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

    # what the code does today: no retry of the utterance; the caller hears the apology and the call
    # ends with a clear pipeline-error reason (a retry once on a retryable STT error would keep it going)
    reply = next_json(client, "playAudio", timeout=30)
    assert "technical difficulties" in (reply["data"].get("textContent") or "")
    assert conversation.ended == "pipeline-error-custom-transcriber-transcriber-failed"
    harness.wait_ended(session)  # ends by itself, no hangup from the caller
    assert session.state.ended_reason == "pipeline-error-custom-transcriber-transcriber-failed"
    call = harness.client.get(f"/call/{session.call_id}").get_json()
    assert call["endedReason"] == "pipeline-error-custom-transcriber-transcriber-failed"
    assert call["status"] == "ended"
    assert stt.calls == 1  # the failed utterance was not sent again

    # the replacement worker serves the next call's speech
    pool.wait_ready(30)
    pcm = speech(SECOND, 16000)
    heard = stt.stt.transcribe(pcm, 16000, timeout=30).text.lower()
    assert "table" in heard and "friday" in heard
