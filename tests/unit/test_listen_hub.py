"""ListenHub without sockets: tokens, URLs, the publish fan-out, drops and call end."""

import gevent
import pytest
from audio_fixtures import frames, speech

from esl_controller.media import listen
from esl_controller.media.codecs import resample, stereo_split
from esl_controller.media.listen import ListenHub, parse_target

CALL = "5b0e6c4e-2f40-4b0a-9d8a-1c2d3e4f5a6b"


def drain(listener):
    out = []
    while not listener.queue.empty():
        out.append(listener.queue.get_nowait())
    return out


def test_tokens_are_per_call_and_per_secret():
    hub = ListenHub(secret="s1")
    token = hub.issue_token(CALL)
    assert hub.check_token(CALL, token)
    assert hub.check_token(CALL.upper(), token)  # ids are case-insensitive
    assert not hub.check_token(CALL, token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert not hub.check_token(CALL, None) and not hub.check_token(CALL, "")
    assert not hub.check_token("another-call", token)
    assert not ListenHub(secret="s2").check_token(CALL, token)
    assert ListenHub(secret="s1").check_token(CALL, token)  # a shared secret works across nodes
    assert ListenHub().issue_token(CALL) != ListenHub().issue_token(CALL)  # random secrets


def test_listen_url_round_trips_through_parse_target():
    hub = ListenHub(secret=b"k")
    url = hub.listen_url("wss://voice.example.com/", CALL)
    assert url.startswith(f"wss://voice.example.com/call/{CALL}/listen?token=")
    target = url[len("wss://voice.example.com") :]
    call_id, token = parse_target(target)
    assert call_id == CALL and hub.check_token(call_id, token)
    assert parse_target(f"/call/{CALL}/control") is None
    assert parse_target("/call//listen") is None
    assert parse_target(f"/fork/{CALL}/listen") is None
    assert parse_target(f"/call/{CALL}/listen") == (CALL, None)


def test_module_helpers_use_the_process_hub():
    hub = ListenHub(secret="process")
    listen.set_default_hub(hub)
    try:
        assert listen.default_hub() is hub
        assert listen.issue_token(CALL) == hub.issue_token(CALL)
        assert listen.listen_url("ws://h:1", CALL) == hub.listen_url("ws://h:1", CALL)
    finally:
        listen.set_default_hub(ListenHub())


def test_publish_without_listeners_does_nothing():
    hub = ListenHub()
    assert hub.publish(CALL, speech("Hello there.", 16000)[:640], None, 16000) == 0
    assert hub.frames_published == 0 and hub.stats()["calls"] == 0


def test_publish_interleaves_caller_left_and_assistant_right():
    hub = ListenHub()
    a, b = hub.add_listener(CALL), hub.add_listener(CALL)
    caller = frames(speech("Yes, seven thirty works for me.", 16000), 16000)[:30]
    bot = frames(speech("Thank you very much, goodbye.", 16000), 16000)[:30]
    for i, (c, s) in enumerate(zip(caller, bot, strict=True)):
        assert hub.publish(CALL, c, s if i % 2 else None, 16000) == 2
    got_a, got_b = drain(a), drain(b)
    assert got_a == got_b and len(got_a) == 30
    for i, frame in enumerate(got_a):
        left, right = stereo_split(frame)
        assert left == caller[i]
        assert right == (bot[i] if i % 2 else bytes(640))
    assert got_a[0] is got_b[0]  # interleaved once, shared by every listener


def test_8k_is_resampled_to_16k_with_state_across_frames():
    hub = ListenHub(queue_frames=1000)
    lst = hub.add_listener(CALL)
    caller = speech("Yes, seven thirty works for me.", 8000)
    bot = speech("Hello, I would like to book a table for two people tonight.", 8000)[: len(caller)]
    for c, s in zip(frames(caller, 8000), frames(bot, 8000), strict=True):
        hub.publish(CALL, c, s, 8000)
    got = b"".join(drain(lst))
    left, right = stereo_split(got)
    assert left == resample(caller, 8000, 16000)  # same as converting the whole signal at once
    assert right == resample(bot, 8000, 16000)
    assert len(got) == pytest.approx(len(caller) * 4, abs=16)  # 2x rate, 2 channels


def test_full_queue_drops_that_listener_only():
    hub = ListenHub(queue_frames=5)
    slow, fast = hub.add_listener(CALL), hub.add_listener(CALL)
    pcm = frames(speech("Thank you very much, goodbye.", 16000), 16000)
    for i, frame in enumerate(pcm[:20]):
        hub.publish(CALL, frame, None, 16000)
        if fast.queue.qsize() >= 4:
            drain(fast)
        if i == 4:
            assert slow.dropped_reason is None
    assert slow.dropped_reason == "listener too slow"
    assert hub.listeners(CALL) == 1 and hub.listeners_dropped == 1
    # the dropped listener's queue holds only the end marker: it is told at once
    assert drain(slow) == [listen._END]
    assert fast.dropped_reason is None


def test_publish_never_switches_greenlets():
    hub = ListenHub(queue_frames=2)
    hub.add_listener(CALL)
    hub.add_listener(CALL)
    ran = []
    gevent.spawn(ran.append, 1)
    for frame in frames(speech("Yes, seven thirty works for me.", 8000), 8000)[:50]:
        hub.publish(CALL, frame, frame, 8000)
    assert ran == []  # the spawned greenlet never got to run: publish did not yield
    gevent.sleep(0)
    assert ran == [1]


def test_listener_limit_and_close_call():
    hub = ListenHub(max_listeners_per_call=2)
    a, b = hub.add_listener(CALL), hub.add_listener(CALL)
    assert hub.add_listener(CALL) is None
    hub.publish(CALL, speech("Hello.", 16000)[:640], None, 16000)
    hub.close_call(CALL)
    assert hub.ended(CALL) and hub.listeners(CALL) == 0
    for lst in (a, b):
        items = drain(lst)
        assert len(items) == 2 and items[-1] is listen._END
    assert hub.publish(CALL, speech("Hello.", 16000)[:640], None, 16000) == 0


def test_remove_listener_forgets_empty_calls():
    hub = ListenHub()
    lst = hub.add_listener(CALL)
    hub.remove_listener(lst)
    hub.remove_listener(lst)  # twice is fine
    assert hub.stats()["calls"] == 0
