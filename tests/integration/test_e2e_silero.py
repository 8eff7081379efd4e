"""A phone call end to end with Silero as the VAD (``startSpeakingPlan.vad = "silero"``): the real controller
and voice pipeline (embedded whisper STT, scripted model, espeak-ng voice) against the fake FreeSWITCH, real
speech over the mod_audio_fork look-alike client. Synchronised on messages and events (bounded waits)."""

from __future__ import annotations

import json

import pytest
from audio_fixtures import speech
from test_calls_support import WAIT, make_phone_number, run_pipeline_harness
from test_e2e_calls import (
    CALLER,
    caller_books_a_table,
    fork_client,
    messages,
    next_json,
    set_assistant,
    until,
)

from esl_controller.media import silero
from esl_controller.media.codecs import silence


@pytest.fixture
def harness(settings, database, api_key):
    yield from run_pipeline_harness(settings, database, api_key)


def test_phone_call_with_silero_vad(harness, database):
    phone = make_phone_number(database)
    set_assistant(database, phone, startSpeakingPlan={"waitSeconds": 0.4, "vad": "silero"})
    leg = harness.place_call(destination="15557654321")
    session = harness.session_for_channel(leg.uuid)
    harness.wait_status(session, "in-progress")
    client = fork_client(harness, session)

    # the first message plays out before the caller speaks
    next_json(client, "playAudio")
    # the call's detector runs on Silero (the pipeline is gone once the call ends: keep a hold of it)
    vad = session.pipeline.conversation.vad
    assert isinstance(vad.confidence, silero.SileroConfidence)
    assert vad.confidence.sample_rate == 16000
    body = {"audioContentType": "raw", "sampleRate": 16000, "file": "/tmp/fs_test_0.tmp.r16"}
    leg.custom("mod_audio_fork::play_audio", json.dumps(body).encode())
    harness.peer.commands.wait_for(lambda c: "uuid_broadcast" in c.line, WAIT)
    until(lambda: not session.pipeline.port.playing())
    windows_before = vad.confidence.windows

    # the caller speaks; Silero finds the utterance, whisper hears it, the scripted reply is spoken
    caller_books_a_table(harness, session, client)
    assert vad.utterances >= 1

    # every window of the caller's audio went through the model
    sent = len(speech(CALLER, 16000) + silence(1.0, 16000)) // 2
    until(lambda: vad.confidence.windows - windows_before >= sent // silero.WINDOW - 1)
    assert vad.confidence.windows - windows_before <= sent // silero.WINDOW + 1

    until(lambda: not session.pipeline.port.playing())
    leg.hangup()
    harness.wait_ended(session)
    roles = [r for r, _ in messages(harness, session.call_id)]
    assert "user" in roles and "bot" in roles
