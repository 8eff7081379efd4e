"""The conversation end to end with real speech: espeak-ng caller audio through the VAD, a fake STT that
returns the known text, the scripted model and the real espeak-ng voice, into a port that records what was
played. Synchronised on notices, never on sleeps."""

import gevent
import pytest
from audio_fixtures import speech

from esl_controller.calls.control import parse_control
from esl_controller.media.codecs import rms, silence
from esl_controller.pipeline.conversation import APOLOGY, Conversation, Timeouts
from esl_controller.pipeline.providers import registry
from esl_controller.pipeline.providers.testing import (
    FakeModel,
    FakeStreamingTranscriber,
    FakeSynthesizer,
    FakeTranscriber,
    RecordingPort,
)

RATE = 16000
SCRIPT = {
    "provider": "custom-llm",
    "model": "scripted",
    "url": "scripted://",
    "messages": [
        {
            "role": "system",
            "content": "You take bookings for {{restaurant}}.\n"
            "When the caller says hours, reply We open at nine every day.",
        }
    ],
    "rules": [
        {"keywords": ["table"], "reply": "Sure {{name}}, for how many people?"},
        {"keywords": ["bye"], "reply": "Thank you for calling. Goodbye."},
        {"keywords": ["hang up"], "reply": "Okay.", "endCall": True},
        {"keywords": ["agent"], "reply": "One moment.",
         "toolCall": {"name": "transferCall", "arguments": {"destination": "+15551230001"}}},
        {"keywords": ["press"], "reply": "Pressing.", "toolCall": {"name": "dtmf", "arguments": {"digits": "12#"}}},
    ],
}  # fmt: skip
LONG_FIRST = (
    "Hello {{name}}, thank you for calling {{restaurant}}. We are open every day from nine in the morning "
    "until eleven at night, and we would be glad to book a table for you."
)


def assistant(**fields):
    body = {"model": dict(SCRIPT), "firstMessageMode": "assistant-waits-for-user"}
    body.update(fields)
    return body


def make(body, texts=(), *, speed=8.0, stt=None, llm=None, tts=None, **kw):
    port = RecordingPort(RATE, speed=speed)
    conv = Conversation(
        body,
        port,
        overrides={"variableValues": {"name": "Ann", "restaurant": "Chez Test"}},
        stt=stt if stt is not None else FakeTranscriber(texts),
        llm=llm or registry.build_model(body.get("model")),
        tts=tts or registry.build_synthesizer(body.get("voice")),
        **kw,
    )
    return conv, port


def say_into(conv, text, tail=0.6, yield_each=False):
    """Feed real speech for ``text`` then ``tail`` seconds of silence, in 20 ms frames (faster than real
    time); ``yield_each`` lets other greenlets (a streaming STT) run between frames, as a transport would."""
    pcm = speech(text, RATE) + silence(tail, RATE)
    step = 640
    for i in range(0, len(pcm), step):
        conv.feed(pcm[i : i + step], i / (2.0 * RATE))
        if yield_each:
            gevent.sleep(0)
    gevent.sleep(0)


@pytest.fixture
def running():
    convs = []

    def run(conv):
        convs.append(conv)
        conv.start()
        return conv

    yield run
    for conv in convs:
        conv.stop()


def test_first_message_is_spoken_with_variables(running):
    conv, port = make(
        assistant(firstMessageMode="assistant-speaks-first", firstMessage="Hi {{name}}!")
    )
    running(conv)
    assert port.wait_for("ready") == {}
    timing = port.wait_for("turn-timing")
    assert port.texts == ["Hi Ann!"]
    assert rms(port.audio) > 300 and len(port.audio) > RATE  # real speech, not silence
    assert port.wait_for("message")["message"] == "Hi Ann!"
    assert timing["ttsFirstByte"] <= timing["firstAudioOut"]


def test_model_generated_first_message(running):
    body = assistant(firstMessageMode="assistant-speaks-first-with-model-generated-message")
    body["model"]["greeting"] = "Welcome to {{restaurant}}."
    conv, port = make(body)
    running(conv)
    port.wait_for("message", lambda m: m["role"] == "bot")
    assert port.texts == ["Welcome to Chez Test."]


def test_waits_for_user_then_answers_the_caller(running):
    conv, port = make(assistant(), ["I would like a table please"])
    running(conv)
    port.wait_for("ready")
    assert port.played == []
    say_into(conv, "Hello, I would like to book a table for two people tonight.")
    timing = port.wait_for("turn-timing")
    assert port.texts == ["Sure Ann, for how many people?"]
    assert (
        conv.stt.audio_seconds and conv.stt.audio_seconds[0] > 2.0
    )  # the whole utterance went to STT
    keys = ["endOfSpeech", "sttFinal", "modelFirstToken", "ttsFirstByte", "firstAudioOut"]
    values = [timing[k] for k in keys]
    assert values == sorted(values)
    roles = [m["role"] for m in port.of("message")]
    assert roles[-2:] == ["user", "bot"]
    assert port.of("transcript")[0] == {
        "role": "user",
        "transcriptType": "final",
        "transcript": "I would like a table please",
    }
    assert [s["status"] for s in port.of("speech") if s["role"] == "user"] == ["started", "stopped"]


def test_prompt_rule_reply(running):
    conv, port = make(assistant(), ["what are your hours"])
    running(conv)
    say_into(conv, "What are your opening hours?")
    port.wait_for("turn-timing")
    assert port.texts == ["We open at nine every day."]


def test_barge_in_stops_playback_and_truncates_history(running):
    body = assistant(
        firstMessageMode="assistant-speaks-first",
        firstMessage=LONG_FIRST,
        firstMessageInterruptionsEnabled=True,
    )
    conv, port = make(body, ["I want a table"], speed=1.0)
    running(conv)
    port.wait_played(lambda p: p.heard() >= 1.0)
    say_into(conv, "Wait, I want a table.")
    interrupted = port.wait_for("interrupted")
    assert port.stops and port.stops[0] >= 1.0
    full = conv.history.render(LONG_FIRST)
    heard = interrupted["truncatedTo"]
    assert heard and full.startswith(heard) and len(heard) < len(full) / 2
    bots = [m for m in port.of("message") if m["role"] == "bot"]
    assert bots[0]["message"] == heard
    assert conv.history.openai_messages()[1] == {"role": "assistant", "content": heard}
    port.wait_for("message", lambda m: m["role"] == "bot" and "how many" in m["message"])
    assert port.texts[-1] == "Sure Ann, for how many people?"


class SlowBreakPort(RecordingPort):
    """Like the FreeSWITCH port: stopping playback takes a round trip (killAudio, then uuid_break and its
    reply), during which other greenlets run and nothing is playing any more."""

    def stop_playback(self):
        heard = super().stop_playback()
        gevent.sleep(0.3)
        return heard


def test_barge_in_whose_stop_yields_still_truncates_history(running):
    body = assistant(
        firstMessageMode="assistant-speaks-first",
        firstMessage=LONG_FIRST,
        firstMessageInterruptionsEnabled=True,
    )
    port = SlowBreakPort(RATE, speed=1.0)
    conv = Conversation(
        body,
        port,
        overrides={"variableValues": {"name": "Ann", "restaurant": "Chez Test"}},
        stt=FakeTranscriber(["I want a table"]),
        llm=registry.build_model(body.get("model")),
        tts=registry.build_synthesizer(body.get("voice")),
    )
    running(conv)
    port.wait_played(lambda p: p.heard() >= 1.0)
    say_into(conv, "Wait, I want a table.")
    interrupted = port.wait_for("interrupted")
    full = conv.history.render(LONG_FIRST)
    assert len(interrupted["truncatedTo"]) < len(full) / 2
    # the turn did not take "not playing" during the stop for "played to the end"
    bots = [m for m in port.of("message") if m["role"] == "bot"]
    assert bots[0]["message"] == interrupted["truncatedTo"]
    assert conv.history.openai_messages()[1]["content"] == interrupted["truncatedTo"]


def test_first_message_not_interruptible_by_default(running):
    body = assistant(
        firstMessageMode="assistant-speaks-first", firstMessage="Hello {{name}}, welcome."
    )
    conv, port = make(body, ["I want a table"], speed=1.0)
    running(conv)
    port.wait_played(lambda p: p.heard() >= 0.3)
    say_into(conv, "Wait, I want a table.")
    port.wait_for("turn-timing", lambda t: t["turn"] == 1)
    assert "interrupted" not in port.kinds() and port.stops == []


def test_backchannel_does_not_interrupt(running):
    body = assistant(
        firstMessageMode="assistant-speaks-first",
        firstMessage=LONG_FIRST,
        firstMessageInterruptionsEnabled=True,
        stopSpeakingPlan={"numWords": 2},
    )
    conv, port = make(body, ["uh-huh"], speed=1.0)
    running(conv)
    port.wait_played(lambda p: p.heard() >= 0.5)
    say_into(conv, "Uh-huh.")
    port.wait_for("transcript", lambda t: t["role"] == "user")
    assert port.playing() and port.stops == []
    port.wait_for("message", lambda m: m["role"] == "bot", timeout=20)
    assert "interrupted" not in port.kinds()
    assert port.of("message")[0]["message"] == conv.history.render(LONG_FIRST)


def test_end_call_phrase_ends_after_it_is_spoken(running):
    conv, port = make(assistant(endCallPhrases=["goodbye"]), ["ok bye"])
    running(conv)
    say_into(conv, "Thank you very much, goodbye.")
    end = port.wait_for("end-call")
    assert end["reason"] == "assistant-said-end-call-phrase"
    kinds = port.kinds()
    assert kinds.index("end-call") > max(
        i for i, n in enumerate(port.notices) if n.kind == "speech"
    )
    assert not port.playing()


def test_end_call_tool_speaks_end_call_message(running):
    conv, port = make(assistant(endCallMessage="Bye {{name}}."), ["please hang up"])
    running(conv)
    say_into(conv, "Please hang up now.")
    assert port.wait_for("end-call")["reason"] == "assistant-ended-call"
    assert port.texts == ["Okay."]  # the model said something, so the end-call message is not added
    calls = [m for m in port.of("message") if m["role"] == "tool_calls"]
    assert calls[0]["toolCalls"][0]["function"]["name"] == "endCall"


def test_transfer_and_dtmf_tools(running):
    conv, port = make(assistant(), ["get me an agent", "press the keys"])
    running(conv)
    say_into(conv, "Can I talk to an agent?")
    transfer = port.wait_for("transfer")
    assert transfer["destination"] == {"type": "number", "number": "+15551230001"}
    say_into(conv, "Press one two pound.")
    assert port.wait_for("dtmf") == {"digits": "12#"}


def test_silence_hook_speaks_idle_message_then_ends(running):
    body = assistant(
        endCallMessage="Goodbye for now.",
        hooks=[
            {
                "on": "customer.speech.timeout",
                "options": {"timeoutSeconds": 0.3, "triggerMaxCount": 1},
                "do": [{"type": "say", "exact": "Are you still there?"}],
            }
        ],
    )
    conv, port = make(body)
    running(conv)
    end = port.wait_for("end-call")
    assert end == {"reason": "silence-timed-out", "message": "Goodbye for now."}
    assert port.texts == ["Are you still there?", "Goodbye for now."]


def test_legacy_silence_timeout_without_messages(running):
    conv, port = make(assistant(silenceTimeoutSeconds=0.4))
    running(conv)
    assert port.wait_for("end-call")["reason"] == "silence-timed-out"
    assert port.played == []


def test_max_duration(running):
    body = assistant(
        maxDurationSeconds=0.5, firstMessageMode="assistant-speaks-first", firstMessage=LONG_FIRST
    )
    conv, port = make(body, speed=1.0)
    running(conv)
    assert port.wait_for("end-call")["reason"] == "exceeded-max-duration"
    assert port.playing()  # it cut in; the session hangs up


def test_say_control_then_end(running):
    conv, port = make(assistant())
    running(conv)
    conv.control(
        parse_control(
            {
                "type": "say",
                "content": "Hello {{name}}, this is a test.",
                "endCallAfterSpoken": True,
            }
        )
    )
    end = port.wait_for("end-call")
    assert end["reason"] == "assistant-ended-call-after-message-spoken"
    assert port.texts == ["Hello {{name}}, this is a test."]  # say content is spoken as given


def test_say_interrupting_the_assistant(running):
    body = assistant(firstMessageMode="assistant-speaks-first", firstMessage=LONG_FIRST)
    conv, port = make(body, speed=1.0)
    running(conv)
    port.wait_played(lambda p: p.heard() >= 0.3)
    conv.control(
        parse_control(
            {"type": "say", "content": "Sorry, one moment.", "interruptAssistantEnabled": True}
        )
    )
    port.wait_for("message", lambda m: m["message"] == "Sorry, one moment.")
    assert port.stops and port.texts[-1] == "Sorry, one moment."


def test_add_message_with_and_without_response(running):
    conv, port = make(assistant())
    running(conv)
    conv.control(
        parse_control(
            {
                "type": "add-message",
                "message": {"role": "system", "content": "Note A"},
                "triggerResponseEnabled": False,
            }
        )
    )
    assert port.wait_for("message")["message"] == "Note A"
    assert conv.history.openai_messages()[-1] == {"role": "system", "content": "Note A"}
    conv.control(
        parse_control(
            {"type": "add-message", "message": {"role": "user", "content": "a table please"}}
        )
    )
    port.wait_for("message", lambda m: m["role"] == "bot")
    assert port.texts == ["Sure Ann, for how many people?"]


def test_mute_assistant(running):
    conv, port = make(assistant())
    running(conv)
    conv.control(parse_control({"type": "control", "control": "mute-assistant"}))
    conv.control(parse_control({"type": "say", "content": "You will not hear this."}))
    port.wait_for("message", lambda m: m["role"] == "bot")
    assert port.played == []
    conv.control(parse_control({"type": "control", "control": "unmute-assistant"}))
    conv.control(
        parse_control({"type": "control", "control": "say-first-message"})
    )  # no first message: nothing
    conv.control(parse_control({"type": "say", "content": "Now you do."}))
    port.wait_for("message", lambda m: m["message"] == "Now you do.")
    assert port.texts == ["Now you do."]


def test_model_failure_apologises_and_reports(running):
    conv, port = make(assistant(), ["hello"], llm=FakeModel(fail=True))
    running(conv)
    say_into(conv, "Hello, is anyone there?")
    error = port.wait_for("error")
    assert error["endedReason"] == "pipeline-error-fake-llm-llm-failed" and error["fatal"] is True
    assert port.texts == [APOLOGY]
    assert port.kinds().index("error") > port.kinds().index("speech")


def test_model_timeout_and_stt_failure(running):
    conv, port = make(assistant(), ["hello"], llm=FakeModel(hang=True), timeouts=Timeouts(llm=0.2))
    running(conv)
    say_into(conv, "Hello, is anyone there?")
    assert port.wait_for("error")["endedReason"] == "pipeline-error-fake-llm-llm-failed"
    conv2, port2 = make(assistant(), stt=FakeTranscriber(fail=True))
    running(conv2)
    say_into(conv2, "Hello, is anyone there?")
    assert port2.wait_for("error")["endedReason"] == "pipeline-error-fake-stt-transcriber-failed"
    assert port2.texts == [APOLOGY]


def test_voice_failure_reports_without_apology(running):
    conv, port = make(assistant(), ["hello"], tts=FakeSynthesizer(fail=True))
    running(conv)
    say_into(conv, "Hello, is anyone there?")
    assert port.wait_for("error")["endedReason"] == "pipeline-error-fake-tts-voice-failed"
    assert port.played == []


def test_streamed_reply_is_spoken_sentence_by_sentence(running):
    model = FakeModel(["First sentence here. Second sentence follows. Third."], token_delay=0.01)
    conv, port = make(assistant(), ["hi"], llm=model, tts=FakeSynthesizer())
    running(conv)
    say_into(conv, "Hello there.")
    port.wait_for("turn-timing")
    assert conv.tts.texts == ["First sentence here.", "Second sentence follows.", "Third."]
    # the first sentence was playing before the model had finished writing
    first_play = port.played[0][0]
    assert first_play < port.played[-1][0]


@pytest.fixture(scope="module")
def embedded_stt():
    """The embedded STT: from the registry, else the whisper worker pool directly; skipped when absent."""
    try:
        yield registry.build_transcriber(None)
        return
    except registry.UnknownProvider:
        pass
    try:
        from esl_controller.pipeline.providers.stt import whisper

        pool = whisper.start_pool(1, timeout=120)
    except Exception as exc:  # noqa: BLE001 - any failure means the engine is not usable here
        pytest.skip(f"embedded STT not available: {exc}")
    try:
        yield whisper.WhisperTranscriber(pool)
    finally:
        pool.close()


def test_real_embedded_stt(running, embedded_stt):
    conv, port = make(assistant(), stt=embedded_stt)
    running(conv)
    say_into(conv, "I would like to book a table for two people tonight.")
    port.wait_for("turn-timing", timeout=60)
    assert "table" in port.of("transcript")[0]["transcript"].lower()
    assert port.texts == ["Sure Ann, for how many people?"]


def test_barge_in_cancels_the_model_stream(running):
    model = FakeModel(
        ["First part of the answer. " + "and then it goes on and on " * 20 + "the end.", "Okay."],
        token_delay=0.05,
    )
    conv, port = make(assistant(), ["tell me everything", "stop"], llm=model, speed=1.0)
    running(conv)
    say_into(conv, "Tell me everything about the menu.")
    port.wait_played(lambda p: p.heard() >= 0.5)
    say_into(conv, "Stop, please.")
    interrupted = port.wait_for("interrupted")
    assert model.abandoned == 1  # the stream was closed, not left running
    assert interrupted["truncatedTo"] and "First part of the answer.".startswith(
        interrupted["truncatedTo"]
    )
    port.wait_for("message", lambda m: m["role"] == "bot" and m["message"] == "Okay.")
    assert port.texts[0] == "First part of the answer."
    assert not any("the end." in t for t in port.texts)


def test_model_stream_breaking_midway_is_a_pipeline_error(running):
    conv, port = make(
        assistant(), ["hi"], llm=FakeModel(["One two three. Four five six."], fail_after_tokens=4)
    )
    running(conv)
    say_into(conv, "Hello there.")
    assert port.wait_for("error")["endedReason"] == "pipeline-error-fake-llm-llm-failed"
    assert port.texts[0] == "One two three." and port.texts[-1] == APOLOGY


def test_truncation_counts_audio_played_before_a_gap(running):
    # The model pauses between sentences long enough for playback to run dry: the port's second utterance
    # starts at the second sentence, yet the first one was heard in full.
    model = FakeModel(
        ["First sentence here. Then the second sentence comes slowly.", "Okay."], token_delay=0.3
    )
    tts = FakeSynthesizer(seconds_per_word=0.2)
    conv, port = make(assistant(), ["go on", "wait"], llm=model, tts=tts, speed=1.0)
    running(conv)
    say_into(conv, "Go on, tell me.")
    port.wait_played(lambda p: len(p.texts) >= 2 and p.heard() >= 0.4)
    say_into(conv, "Wait a moment.")
    heard = port.wait_for("interrupted")["truncatedTo"]
    assert heard.startswith("First sentence here. Then")
    assert heard != "First sentence here. Then the second sentence comes slowly."


def test_from_assistant_builds_embedded_providers(running):
    body = {
        "firstMessage": "Hello {{name}}.",
        "model": {"provider": "custom-llm", "model": "scripted", "url": "scripted://"},
        "voice": {"provider": "custom-voice", "model": "espeak-ng", "voiceId": "en-us"},
        "transcriber": {"provider": "custom-transcriber", "model": "made-up-engine"},
    }
    port = RecordingPort(RATE, speed=8.0)
    with pytest.raises(registry.UnknownProvider, match="made-up-engine"):
        Conversation.from_assistant(body, port)
    body["transcriber"] = {"provider": "custom-transcriber", "model": "test-fake"}
    registry.register("stt", "custom-transcriber", model="test-fake")(lambda cfg: FakeTranscriber())
    try:
        conv = Conversation.from_assistant(
            body, port, overrides={"variableValues": {"name": "Ann"}}
        )
    finally:
        registry.unregister("stt", "custom-transcriber", model="test-fake")
    assert conv.llm.name == "custom-llm" and conv.tts.name == "espeak-ng"
    assert isinstance(conv.stt, FakeTranscriber)
    running(conv)
    port.wait_for("message", lambda m: m["role"] == "bot")
    assert port.texts == ["Hello Ann."]


def test_streaming_transcriber_reply_and_partials(running):
    stt = FakeStreamingTranscriber(["I would like a table please"])
    conv, port = make(assistant(), stt=stt)
    assert conv.streaming
    running(conv)
    say_into(conv, "Hello, I would like to book a table for two people tonight.")
    port.wait_for("turn-timing")
    assert port.texts == ["Sure Ann, for how many people?"]
    partials = [t["transcript"] for t in port.of("transcript") if t["transcriptType"] == "partial"]
    assert (
        partials and partials[0] == "I" and "I would like a table please".startswith(partials[-1])
    )
    stream = stt.streams[0]
    assert (
        stream.closed and stream.pushed / (2.0 * RATE) > 3.0
    )  # the whole utterance (with pre-roll) went in


def test_streaming_partials_barge_in_before_the_caller_stops(running):
    body = assistant(
        firstMessageMode="assistant-speaks-first",
        firstMessage=LONG_FIRST,
        firstMessageInterruptionsEnabled=True,
        stopSpeakingPlan={"numWords": 3},
    )
    stt = FakeStreamingTranscriber(["uh-huh", "hold on I want a table"], seconds_per_word=0.15)
    conv, port = make(body, stt=stt, speed=1.0)
    running(conv)
    port.wait_played(lambda p: p.heard() >= 0.5)
    say_into(conv, "Uh-huh.")
    port.wait_for(
        "transcript", lambda t: t["transcript"] == "uh-huh" and t["transcriptType"] == "final"
    )
    assert port.stops == []  # a backchannel does not interrupt
    mark = len(port.notices)
    say_into(conv, "Hold on, I want a table for two.", yield_each=True)
    port.wait_for("interrupted", start=mark)
    kinds = port.kinds()[mark:]
    user_stops = [
        i
        for i, k in enumerate(kinds)
        if k == "speech"
        and port.notices[mark + i].data["role"] == "user"
        and port.notices[mark + i].data["status"] == "stopped"
    ]
    assert (
        kinds.index("interrupted") < user_stops[0]
    )  # interrupted on a partial, while the caller spoke
    port.wait_for("message", lambda m: m["role"] == "bot" and "how many" in m["message"])


def test_real_streaming_sphinx_when_available(running):
    try:
        stt = registry.build_transcriber(
            {"provider": "custom-transcriber", "model": "pocketsphinx-en-us"}
        )
    except (registry.UnknownProvider, ImportError) as exc:
        pytest.skip(f"pocketsphinx not available: {exc}")
    conv, port = make(assistant(), stt=stt)
    assert conv.streaming
    running(conv)
    say_into(conv, "I would like to book a table for two people tonight.", yield_each=True)
    port.wait_for(
        "transcript", lambda t: t["role"] == "user" and t["transcriptType"] == "final", timeout=60
    )
    final = port.of("transcript")[-1]["transcript"].lower()
    assert "table" in final or "two" in final or "people" in final, final


def test_eight_khz_call(running):
    port = RecordingPort(8000, speed=8.0)
    body = assistant()
    conv = Conversation(
        body,
        port,
        stt=FakeTranscriber(["a table please"]),
        llm=registry.build_model(body["model"]),
        tts=registry.build_synthesizer(None),
        overrides={"variableValues": {"name": "Ann"}},
    )
    running(conv)
    pcm = speech("Hello, I would like to book a table.", 8000) + silence(0.6, 8000)
    for i in range(0, len(pcm), 320):
        conv.feed(pcm[i : i + 320], i / 16000.0)
    port.wait_for("turn-timing")
    assert port.texts == ["Sure Ann, for how many people?"]
    seconds = len(port.audio) / 16000.0
    assert 1.0 < seconds < 4.0 and rms(port.audio) > 300  # 8 kHz speech, not 16 kHz bytes
    assert 2.0 < conv.stt.audio_seconds[0] < 4.0


class TimedPort(RecordingPort):
    """A port that can say how long its speech has left, counting how often it is asked if it plays."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.asked = 0  # by the conversation (play() asks too, for itself)
        self._in_play = False

    def play(self, pcm16: bytes, *, text: str = "") -> None:
        self._in_play = True
        try:
            super().play(pcm16, text=text)
        finally:
            self._in_play = False

    def playing(self) -> bool:
        if not self._in_play:
            self.asked += 1
        return super().playing()

    def unplayed_seconds(self) -> float:
        return max(0.0, self._queued - self.heard()) / self.speed if self._start else 0.0


def test_a_port_that_knows_how_long_its_speech_lasts_is_not_polled(running):
    """The turn waits for the end of its speech by the port's own figure, asking ``playing()`` a few
    times (about every 0.5 s), not every 20 ms (the greeting's 3 s played at real time: 150 times)."""
    body = assistant(firstMessageMode="assistant-speaks-first", firstMessage=LONG_FIRST)
    port = TimedPort(RATE, speed=1.0)
    conv = Conversation(
        body,
        port,
        overrides={"variableValues": {"name": "Ann", "restaurant": "Chez Test"}},
        stt=FakeTranscriber(),
        llm=registry.build_model(body["model"]),
        tts=FakeSynthesizer(seconds_per_word=0.1),
    )
    running(conv)
    message = port.wait_for("message", timeout=15)
    asked = port.asked
    assert message["message"].startswith("Hello Ann")
    assert len(port.audio) / (2.0 * RATE) > 3.0
    assert not port.playing()  # the message is committed once all of it was played
    assert asked < 15


def test_an_idle_conversation_does_not_wake_up_every_second(running):
    """Each wait is a timer and a few objects for the garbage collector: at hundreds of calls, idle
    loops that poll every second are real work. Stop (or the next event) wakes them anyway."""
    import greenlet

    conv, port = make(assistant())  # waits for the caller: nothing to do until the caller speaks
    running(conv)
    port.wait_for("ready")
    gevent.sleep(0.2)
    loops = set(conv._greenlets)
    assert len(loops) >= 2  # the transcriber's and the timers' loops
    woken = []

    def trace(event, args):
        if event in ("switch", "throw") and args[1] in loops:
            woken.append(args[1])

    previous = greenlet.settrace(trace)
    try:
        gevent.sleep(2.5)
    finally:
        greenlet.settrace(previous)
    assert woken == []
    conv.stop()
    assert all(g.dead for g in loops)  # and stop still ends them at once
