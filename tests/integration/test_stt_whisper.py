"""Embedded faster-whisper tiny.en in a worker process, on real (espeak-ng) speech at 8 and 16 kHz."""

from __future__ import annotations

import os
import re
import signal

import gevent
import gevent.event
import pytest

from esl_controller.pipeline.providers import registry
from esl_controller.pipeline.providers.base import ProviderError, Transcriber
from esl_controller.pipeline.providers.stt.whisper import MODEL, PROVIDER, WhisperTranscriber
from tests.audio_fixtures import PHRASES, committed_wav, speech

SENTENCES = (
    PHRASES[0],
    PHRASES[2],
    "Please send the invoice to my email address.",
    "I need to change my delivery address.",
)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def recall(reference: str, heard: str) -> float:
    """Share of the reference words found in the transcript (a WER-ish score robust to insertions)."""
    ref, got = words(reference), words(heard)
    remaining = list(got)
    hits = 0
    for word in ref:
        if word in remaining:
            remaining.remove(word)
            hits += 1
    return hits / len(ref)


class Events:
    def __init__(self) -> None:
        self.waiters: dict[str, list[gevent.event.AsyncResult]] = {}

    def __call__(self, event: str, pid: int) -> None:
        for waiter in self.waiters.pop(event, []):
            waiter.set(pid)

    def next(self, event: str) -> gevent.event.AsyncResult:
        waiter = gevent.event.AsyncResult()
        self.waiters.setdefault(event, []).append(waiter)
        return waiter


@pytest.fixture(scope="module")
def whisper():
    """The registry's default transcriber over the process-wide whisper pool: its models load once per
    test session (other modules asking the registry get the same pool)."""
    transcriber = registry.build_transcriber(None)
    events = Events()
    transcriber.pool.on_event = events
    yield transcriber, events
    transcriber.pool.on_event = None


def test_is_a_transcriber(whisper):
    transcriber, _ = whisper
    assert isinstance(transcriber, Transcriber)
    assert transcriber.name == "custom-transcriber"
    same = registry.build_transcriber(
        {"provider": "custom-transcriber", "model": "whisper-tiny.en"}
    )
    assert same.pool is transcriber.pool and isinstance(same, WhisperTranscriber)
    with pytest.raises(ValueError):
        WhisperTranscriber(transcriber.pool, model="large-v3")


@pytest.mark.parametrize("rate", [16000, 8000])
def test_hears_the_words(whisper, rate):
    """Each sentence keeps at least half its words, and at least 75% of all words are heard."""
    transcriber, _ = whisper
    scores = []
    for sentence in SENTENCES:
        pcm = speech(sentence, rate)
        result = transcriber.transcribe(pcm, rate, timeout=60)
        assert result.is_final and result.language == "en"
        assert result.usage is not None
        assert result.usage.kind == "stt" and result.usage.provider == PROVIDER
        assert result.usage.model == MODEL
        assert result.usage.audio_seconds == pytest.approx(len(pcm) / (2 * rate), abs=0.01)
        score = recall(sentence, result.text)
        assert score >= 0.5, (sentence, result.text)
        scores.append((len(words(sentence)), score))
    total = sum(n * score for n, score in scores) / sum(n for n, _ in scores)
    assert total >= 0.75, scores


@pytest.mark.parametrize("name", ["yes_seven_thirty_8k.wav", "yes_seven_thirty_16k.wav"])
def test_committed_fixture(whisper, name):
    transcriber, _ = whisper
    pcm, rate = committed_wav(name)
    text = transcriber.transcribe(pcm, rate, timeout=60).text
    assert {"yes", "for", "me"} <= set(words(text)), text
    assert "730" in text or {"seven", "thirty"} <= set(words(text)), text


def test_empty_utterance_needs_no_worker(whisper):
    transcriber, _ = whisper
    result = transcriber.transcribe(b"", 8000, timeout=5)
    assert result.text == "" and result.usage.audio_seconds == 0


def test_hub_is_not_blocked_while_decoding(whisper):
    transcriber, _ = whisper
    pcm = b"".join(speech(s, 16000) for s in SENTENCES)  # about 10 s of speech: > 0.3 s of decoding
    ticks = 0

    def ticker():
        nonlocal ticks
        while True:
            gevent.sleep(0.01)
            ticks += 1

    g = gevent.spawn(ticker)
    try:
        result = transcriber.transcribe(pcm, 16000, timeout=120)
    finally:
        g.kill()
    assert recall(" ".join(SENTENCES), result.text) >= 0.7, result.text
    assert result.usage.latency_ms > 300
    assert ticks >= 5, ticks  # in-process decoding would hold the GIL and stop the ticker


def test_worker_killed_mid_request_is_replaced(whisper):
    transcriber, events = whisper
    dispatched, ready = events.next("dispatch"), events.next("ready")
    long_pcm = b"".join(speech(s, 16000) for s in SENTENCES)
    job = gevent.spawn(transcriber.transcribe, long_pcm, 16000, timeout=120)
    victim = dispatched.get(timeout=60)
    os.kill(victim, signal.SIGKILL)
    job.join(timeout=60)
    assert isinstance(job.exception, ProviderError), job.value
    assert job.exception.retryable
    assert job.exception.ended_reason == "pipeline-error-custom-transcriber-transcriber-failed"
    assert ready.get(timeout=120) != victim
    result = transcriber.transcribe(speech(PHRASES[2], 8000), 8000, timeout=60)
    assert recall(PHRASES[2], result.text) >= 0.7, result.text
