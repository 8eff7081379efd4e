"""Embedded pocketsphinx in a worker process: streaming partials and finals, and the yes/no grammar."""

from __future__ import annotations

import os
import re
import signal

import gevent
import pytest

pytest.importorskip("pocketsphinx", reason="the sphinx extra is not installed")

from esl_controller.media.codecs import silence  # noqa: E402
from esl_controller.pipeline.providers.base import (  # noqa: E402
    ProviderError,
    StreamingTranscriber,
    Transcriber,
    TranscriberStream,
)
from esl_controller.pipeline.providers.stt.sphinx import (  # noqa: E402
    MODEL,
    SphinxTranscriber,
    classify_yes_no,
    start_pool,
)
from tests.audio_fixtures import frames, speech  # noqa: E402

YES_NO = {
    "Yes.": "yes",
    "No.": "no",
    "Yes please.": "yes",
    "No thank you.": "no",
    "Nope.": "no",
    "Yeah.": "yes",
    "Wrong.": "no",
    "That is correct.": "yes",
}


def utterance(text: str, rate: int) -> bytes:
    """An endpointed utterance as the pipeline cuts it: a little silence before and after the speech."""
    return silence(0.3, rate) + speech(text, rate) + silence(0.3, rate)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


@pytest.fixture(scope="module")
def pool():
    pool = start_pool(1, timeout=60)
    yield pool
    pool.close()


def stream_utterance(stream, pcm: bytes, rate: int):
    partials = []
    for frame in frames(pcm, rate):
        stream.push(frame)
        partials += list(stream.results(0))
    final = stream.finish(timeout=30)
    return partials, final


@pytest.mark.parametrize("rate", [16000, 8000])
def test_streaming_partials_then_final(pool, rate):
    transcriber = SphinxTranscriber(pool)
    assert isinstance(transcriber, StreamingTranscriber) and isinstance(transcriber, Transcriber)
    stream = transcriber.open_stream(rate)
    assert isinstance(stream, TranscriberStream)
    try:
        # free dictation on espeak voices is weak (WER 50%+, see bench/stt_workers.py): a phrase it
        # mostly gets, and a low bar on the words
        text = "What time do you open tomorrow?"
        partials, final = stream_utterance(stream, utterance(text, rate), rate)
        # partials may still be in flight when the loop ends; collect what came
        partials += list(stream.results(1.0))
        assert partials and all(not p.is_final and p.text for p in partials)
        assert final is not None and final.is_final
        assert len(words(final.text) & words(text)) >= 2, final.text
        assert final.usage.model == MODEL and final.usage.audio_seconds > 1.5
        # the stream goes on: a second utterance on the same stream
        pcm = utterance("No thank you.", rate)
        _, second = stream_utterance(stream, pcm, rate)
        assert second is not None and second.text
        assert second.usage.audio_seconds == pytest.approx(len(pcm) / (2 * rate), abs=0.03)
    finally:
        stream.close()
    assert pool.stats().streams == 0


@pytest.mark.parametrize("rate", [16000, 8000])
def test_yes_no_grammar(pool, rate):
    stream = SphinxTranscriber(pool, grammar="yesno").open_stream(rate)
    right = []
    try:
        for text, meaning in YES_NO.items():
            _, final = stream_utterance(stream, utterance(text, rate), rate)
            right.append(final is not None and classify_yes_no(final.text) == meaning)
    finally:
        stream.close()
    assert sum(right) >= len(YES_NO) - 1, list(zip(YES_NO, right, strict=True))


def test_one_word_without_leading_silence(pool):
    """Live normalisation has not settled on a bare word: the whole-utterance retry catches it."""
    stream = SphinxTranscriber(pool, grammar="yesno").open_stream(16000)
    try:
        _, final = stream_utterance(stream, speech("No.", 16000), 16000)
    finally:
        stream.close()
    assert final is not None and final.text == "no"


def test_utterance_mode(pool):
    result = SphinxTranscriber(pool, grammar="yesno").transcribe(
        utterance("Yes please.", 8000), 8000, timeout=30
    )
    assert classify_yes_no(result.text) == "yes" and result.usage.audio_seconds > 0.6


def test_custom_jsgf_grammar(pool):
    grammar = "#JSGF V1.0;\ngrammar menu;\npublic <choice> = sales | support | billing;\n"
    stream = SphinxTranscriber(pool, grammar=grammar).open_stream(8000)
    try:
        _, final = stream_utterance(stream, utterance("Billing.", 8000), 8000)
    finally:
        stream.close()
    assert final is not None and final.text == "billing"


def test_stream_fails_retryable_when_its_worker_dies():
    pool = start_pool(1, timeout=60)
    try:
        stream = SphinxTranscriber(pool).open_stream(16000)
        stream.push(speech("Yes please.", 16000))
        os.kill(pool.pids()[0], signal.SIGKILL)
        with pytest.raises(ProviderError) as err:
            with gevent.Timeout(30):
                while True:
                    list(stream.results(1.0))
        assert err.value.retryable
    finally:
        pool.close()
