"""Turn-taking state machine: tables of events and expected decisions."""

import pytest

from esl_controller.media.endpointing import StopSpeakingPlan
from esl_controller.pipeline.assistant import IdlePlan
from esl_controller.pipeline.turns import (
    AssistantBusy,
    AssistantDone,
    AssistantText,
    CallerPartial,
    CallerStarted,
    CallerStopped,
    CallerText,
    CallerVoiced,
    EndCall,
    Ignore,
    Interrupt,
    Respond,
    SentenceChunker,
    SpeakIdle,
    Tick,
    TurnPolicy,
    TurnTaker,
    find_end_call_phrase,
)

NO_SILENCE = IdlePlan(silence_timeout_seconds=None)


def run(policy, events):
    taker = TurnTaker(policy)
    return [taker.handle(e) for e in events], taker


def test_caller_final_when_assistant_quiet_gets_a_reply():
    out, _ = run(
        TurnPolicy(idle=NO_SILENCE),
        [CallerStarted(1), CallerStopped(2), CallerText(2.3, "hi there")],
    )
    assert out == [[], [], [Respond("hi there")]]


def test_empty_transcript_is_ignored():
    out, _ = run(TurnPolicy(idle=NO_SILENCE), [CallerText(1, "  ")])
    assert out == [[Ignore("", "empty")]]


@pytest.mark.parametrize(
    ("voiced", "expected"),
    [(0.1, []), (0.2, [Interrupt("voice")]), (0.5, [Interrupt("voice")])],
)
def test_voice_plan_interrupts_after_voice_seconds(voiced, expected):
    out, taker = run(
        TurnPolicy(idle=NO_SILENCE),
        [AssistantBusy(0), CallerStarted(1), CallerVoiced(1.2, voiced)],
    )
    assert out[-1] == expected
    assert taker.assistant_busy is (not expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("uh-huh", [Ignore("uh-huh", "backchannel")]),
        ("okay yeah", [Ignore("okay yeah", "backchannel")]),
        ("tomorrow", [Ignore("tomorrow", "not-enough")]),
        ("what about tomorrow", [Interrupt("words"), Respond("what about tomorrow")]),
        ("stop", [Interrupt("interruption-phrase"), Respond("stop")]),
    ],
)
def test_word_plan_backchannels_do_not_interrupt(text, expected):
    policy = TurnPolicy(stop_plan=StopSpeakingPlan(num_words=2), idle=NO_SILENCE)
    out, _ = run(
        policy, [AssistantBusy(0), CallerStarted(1), CallerVoiced(1.5, 1.0), CallerText(2, text)]
    )
    assert out[2] == []  # voice alone never interrupts a word-counting plan
    assert out[3] == expected


def test_not_interruptible_turn_ignores_caller():
    out, _ = run(
        TurnPolicy(idle=NO_SILENCE),
        [AssistantBusy(0, interruptible=False), CallerVoiced(1, 2.0), CallerText(2, "hello hello")],
    )
    assert out[1:] == [[], [Ignore("hello hello", "not-interruptible")]]


def test_end_call_phrase_ends_after_spoken():
    policy = TurnPolicy(end_call_phrases=("Goodbye",), idle=NO_SILENCE)
    out, _ = run(
        policy, [AssistantBusy(0), AssistantText(0.1, "Thanks, goodbye!"), AssistantDone(2)]
    )
    assert out == [[], [], [EndCall("assistant-said-end-call-phrase")]]


def test_end_call_phrase_cut_off_by_barge_in_does_not_end():
    policy = TurnPolicy(end_call_phrases=("goodbye",), idle=NO_SILENCE)
    out, taker = run(
        policy,
        [
            AssistantBusy(0),
            AssistantText(0.1, "OK goodbye"),
            CallerVoiced(0.5, 0.3),
            AssistantDone(1),
        ],
    )
    assert out[2] == [Interrupt("voice")]
    assert out[3] == [] and taker.ended is None


def test_end_after_spoken_from_say():
    out, _ = run(
        TurnPolicy(idle=NO_SILENCE),
        [AssistantBusy(0, end_after="assistant-ended-call-after-message-spoken"), AssistantDone(3)],
    )
    assert out[1] == [EndCall("assistant-ended-call-after-message-spoken")]


def test_max_duration():
    taker = TurnTaker(TurnPolicy(max_duration=10, idle=NO_SILENCE))
    assert taker.next_deadline() == 10
    assert taker.handle(Tick(9.9)) == []
    assert taker.handle(Tick(10.0)) == [EndCall("exceeded-max-duration")]
    assert taker.handle(Tick(11.0)) == []  # ended once


def test_idle_messages_then_silence_timeout():
    idle = IdlePlan(
        timeout_seconds=5, messages=("Are you there?",), max_count=2, silence_timeout_seconds=None
    )
    taker = TurnTaker(TurnPolicy(idle=idle, end_call_message="Bye."))
    assert taker.next_deadline() == 5
    assert taker.handle(Tick(4.9)) == []
    assert taker.handle(Tick(5)) == [SpeakIdle("Are you there?", 1)]
    taker.handle(AssistantBusy(5))
    assert taker.handle(Tick(20)) == []  # busy: no idle clock
    taker.handle(AssistantDone(6))
    assert taker.handle(Tick(11)) == [SpeakIdle("Are you there?", 2)]
    taker.handle(AssistantBusy(11))
    taker.handle(AssistantDone(12))
    assert taker.handle(Tick(17)) == [EndCall("silence-timed-out", "Bye.")]


def test_caller_speech_resets_idle_count():
    idle = IdlePlan(
        timeout_seconds=5, messages=("Hello?",), max_count=1, silence_timeout_seconds=None
    )
    taker = TurnTaker(TurnPolicy(idle=idle))
    assert taker.handle(Tick(5)) == [SpeakIdle("Hello?", 1)]
    taker.handle(CallerStarted(6))
    assert taker.handle(Tick(30)) == []  # caller still speaking
    taker.handle(CallerStopped(7))
    assert taker.handle(Tick(12)) == [SpeakIdle("Hello?", 1)]


def test_legacy_silence_timeout():
    taker = TurnTaker(TurnPolicy(idle=IdlePlan(silence_timeout_seconds=10)))
    taker.handle(CallerStopped(3))
    assert taker.next_deadline() == 13
    assert taker.handle(Tick(12.9)) == []
    assert taker.handle(Tick(13)) == [EndCall("silence-timed-out", "")]


@pytest.mark.parametrize(
    ("text", "phrases", "found"),
    [
        ("Goodbye and take care", ("goodbye",), "goodbye"),
        ("GOODBYE!", ("goodbye",), "goodbye"),
        ("goodbyes are hard", ("goodbye",), None),
        ("Have a nice day.", ("have a nice day",), "have a nice day"),
        ("nice", ("have a nice day",), None),
    ],
)
def test_find_end_call_phrase(text, phrases, found):
    assert find_end_call_phrase(text, phrases) == found


def test_sentence_chunker():
    c = SentenceChunker()
    out = []
    for piece in [
        "Hello there",
        ". Dr. Smith",
        " will see you at 3.5 ",
        "pm! Is",
        " that ok?",
        " Great",
    ]:
        out += c.push(piece)
    assert out == ["Hello there.", "Dr. Smith will see you at 3.5 pm!", "Is that ok?"]
    assert c.push(" Yes.\nNext") == ["Great Yes."]
    assert c.flush() == ["Next"]
    short = SentenceChunker()
    assert short.push("Ok. ") == []  # too short to speak alone: joined with what follows
    assert short.push("Then we go. ") == ["Ok. Then we go."]
    assert c.flush() == []


@pytest.mark.parametrize(
    ("partial", "expected"),
    [
        ("uh-huh", []),
        ("hold", []),
        ("hold on", [Interrupt("interruption-phrase")]),
        ("a b c", [Interrupt("words")]),
    ],
)
def test_partials_interrupt_word_plans(partial, expected):
    policy = TurnPolicy(stop_plan=StopSpeakingPlan(num_words=3), idle=NO_SILENCE)
    out, _ = run(policy, [AssistantBusy(0), CallerStarted(1), CallerPartial(1.2, partial)])
    assert out[2] == expected
