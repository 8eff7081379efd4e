"""stopSpeakingPlan tables: voice seconds, word counts, backchannels, backoff."""

import pytest

from esl_controller.media.endpointing import (
    BargeInDetector,
    StopSpeakingPlan,
    is_backchannel,
    should_interrupt,
)

DEFAULT = StopSpeakingPlan()
TWO_WORDS = StopSpeakingPlan(num_words=2)


@pytest.mark.parametrize(
    "plan,voiced,transcript,interrupt,reason",
    [
        (DEFAULT, 0.0, "", False, "not-enough"),
        (DEFAULT, 0.1, "", False, "not-enough"),
        (DEFAULT, 0.2, "", True, "voice"),
        (DEFAULT, 0.5, "uh-huh", True, "voice"),  # numWords 0: the VAD decides
        (StopSpeakingPlan(voice_seconds=0.6), 0.5, "", False, "not-enough"),
        (TWO_WORDS, 3.0, "", False, "not-enough"),  # voiceSeconds ignored when numWords > 0
        (TWO_WORDS, 1.0, "uh-huh", False, "backchannel"),
        (TWO_WORDS, 1.0, "Okay. Yeah, mm-hmm, right.", False, "backchannel"),
        (TWO_WORDS, 1.0, "all right", False, "backchannel"),
        (TWO_WORDS, 1.0, "okay book", False, "not-enough"),
        (TWO_WORDS, 1.0, "okay book it", True, "words"),
        (TWO_WORDS, 1.0, "what time", True, "words"),
        (TWO_WORDS, 0.3, "wait", True, "interruption-phrase"),
        (TWO_WORDS, 0.3, "hold on", True, "interruption-phrase"),
        (StopSpeakingPlan(num_words=1), 0.3, "yeah", False, "backchannel"),
        (StopSpeakingPlan(num_words=1), 0.3, "tomorrow", True, "words"),
    ],
)
def test_should_interrupt(plan, voiced, transcript, interrupt, reason):
    decision = should_interrupt(plan, voiced, transcript)
    assert (decision.interrupt, decision.reason) == (interrupt, reason)


def test_is_backchannel():
    assert is_backchannel("Uh-huh.")
    assert is_backchannel("okay okay")
    assert not is_backchannel("")
    assert not is_backchannel("okay then")


def test_from_vapi_dict():
    plan = StopSpeakingPlan.from_dict(
        {"numWords": 3, "voiceSeconds": 0.3, "backoffSeconds": 2, "acknowledgementPhrases": ["k"]}
    )
    assert (plan.num_words, plan.voice_seconds, plan.backoff_seconds) == (3, 0.3, 2.0)
    assert plan.acknowledgement_phrases == ("k",)
    assert StopSpeakingPlan.from_dict(None) == StopSpeakingPlan()


def test_barge_in_detector_interrupts_once_and_backs_off():
    det = BargeInDetector(StopSpeakingPlan(voice_seconds=0.2, backoff_seconds=1.0))
    assert det.caller_update(0.0, 1.0) is None  # assistant silent: nothing to interrupt
    det.assistant_started()
    assert det.caller_update(1.0, 0.1) is None
    decision = det.caller_update(1.1, 0.2)
    assert decision is not None and decision.reason == "voice"
    assert det.caller_update(1.2, 0.4) is None  # already interrupted
    assert det.interruptions == 1
    assert det.resume_at() == pytest.approx(2.1)
    assert not det.may_speak(2.0)
    assert det.may_speak(2.1)


def test_backchannel_does_not_stop_the_assistant():
    det = BargeInDetector(StopSpeakingPlan(num_words=2))
    det.assistant_started()
    assert det.caller_update(0.5, 0.8, "mm-hmm") is None
    assert det.assistant_speaking
    assert det.caller_update(0.9, 1.2, "mm-hmm sorry what") is not None
