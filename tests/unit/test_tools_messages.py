"""Which tool messages are said when (pure)."""

import pytest

from esl_controller.pipeline.tools import messages as tm

MESSAGES = [
    {"type": "request-start", "content": "Checking {{city}}.", "blocking": True},
    {
        "type": "request-start",
        "content": "Checking the big order.",
        "conditions": [{"param": "quantity", "operator": "gt", "value": "10"}],
    },
    {"type": "request-complete", "content": "Done.", "endCallAfterSpokenEnabled": True},
    {
        "type": "request-complete",
        "content": "hint",
        "role": "system",
        "conditions": [{"param": "mode", "operator": "eq", "value": "quiet"}],
    },  # fmt: skip
    {"type": "request-failed", "content": "Sorry, that did not work."},
    {"type": "request-response-delayed", "content": "Still working.", "timingMilliseconds": 3000},
    {"type": "request-response-delayed", "content": "Almost.", "timingMilliseconds": 1000},
    {"type": "something-else", "content": "ignored"},
]


def parsed():
    return tm.parse_messages(MESSAGES)


def test_parse_drops_unknown_types_and_reads_fields():
    msgs = parsed()
    assert [m.type for m in msgs].count("request-start") == 2
    assert all(m.type in tm.TYPES for m in msgs)
    start = msgs[0]
    assert start.blocking is True and start.content == "Checking {{city}}."
    complete = msgs[2]
    assert complete.end_call_after_spoken is True and complete.spoken
    system = msgs[3]
    assert system.role == "system" and not system.spoken and not system.end_call_after_spoken


def test_contents_alternative_and_default_delay():
    (msg,) = tm.parse_messages(
        [{"type": "request-response-delayed", "contents": [{"type": "text", "text": "Hmm."}]}]
    )
    assert msg.content == "Hmm." and msg.timing_ms == 1000


@pytest.mark.parametrize(
    ("condition", "args", "expected"),
    [
        ({"param": "n", "operator": "eq", "value": "3"}, {"n": 3}, True),
        ({"param": "n", "operator": "eq", "value": "3"}, {"n": "3.0"}, True),
        ({"param": "n", "operator": "neq", "value": "3"}, {"n": 4}, True),
        ({"param": "n", "operator": "gt", "value": "3"}, {"n": 4}, True),
        ({"param": "n", "operator": "gt", "value": "3"}, {"n": 3}, False),
        ({"param": "n", "operator": "gte", "value": "3"}, {"n": 3}, True),
        ({"param": "n", "operator": "lt", "value": "3"}, {"n": "2"}, True),
        ({"param": "n", "operator": "lte", "value": "3"}, {"n": 4}, False),
        ({"param": "n", "operator": "gt", "value": "3"}, {"n": "many"}, False),
        ({"param": "name", "operator": "eq", "value": "Ann"}, {"name": "Ann"}, True),
        ({"param": "ok", "operator": "eq", "value": "true"}, {"ok": True}, True),
        ({"param": "a.b", "operator": "eq", "value": "x"}, {"a": {"b": "x"}}, True),
        ({"param": "missing", "operator": "eq", "value": "x"}, {}, False),
        ({"param": "missing", "operator": "neq", "value": "x"}, {}, True),
        ({"param": "n", "operator": "like", "value": "3"}, {"n": 3}, False),
    ],
)
def test_conditions(condition, args, expected):
    assert tm.condition_holds(condition, args) is expected


def test_conditional_message_wins_over_default():
    msgs = parsed()
    assert tm.start_message(msgs, {"quantity": 50}).content == "Checking the big order."
    assert tm.start_message(msgs, {"quantity": 2}).content == "Checking {{city}}."
    assert tm.result_message(msgs, {"mode": "quiet"}, failed=False).role == "system"
    assert tm.result_message(msgs, {}, failed=False).content == "Done."
    assert tm.result_message(msgs, {}, failed=True).content == "Sorry, that did not work."


def test_no_start_message_for_async_tools():
    assert tm.start_message(parsed(), {}, is_async=True) is None


def test_filler_only_when_no_start_message_is_defined():
    assert tm.start_message((), {}, call_id="c1", fillers=()) is None
    filler = tm.start_message((), {}, call_id="c1", fillers=tm.DEFAULT_FILLERS)
    assert filler is not None and filler.content in tm.DEFAULT_FILLERS
    # the same call id gives the same filler
    again = tm.start_message((), {}, call_id="c1", fillers=tm.DEFAULT_FILLERS)
    assert again.content == filler.content
    # an empty request-start silences the filler
    silent = tm.parse_messages([{"type": "request-start", "content": ""}])
    assert tm.start_message(silent, {}, call_id="c1", fillers=tm.DEFAULT_FILLERS) is None
    # request-start messages exist but none applies: no filler either
    only_conditional = tm.parse_messages(
        [
            {
                "type": "request-start",
                "content": "x",
                "conditions": [{"param": "a", "operator": "eq", "value": "1"}],
            }
        ]  # fmt: skip
    )
    assert tm.start_message(only_conditional, {}, fillers=tm.DEFAULT_FILLERS) is None


def test_delayed_messages_are_sorted_by_timing():
    delayed = tm.delayed_messages(parsed(), {})
    assert [(m.content, m.timing_ms) for m in delayed] == [
        ("Almost.", 1000),
        ("Still working.", 3000),
    ]


def test_server_message_overrides_the_tools():
    msgs = parsed()
    got = tm.result_message(
        msgs,
        {},
        failed=False,
        server_message={"type": "request-complete", "content": "From server"},
    )
    assert got.content == "From server"
    got = tm.result_message(msgs, {}, failed=True, server_message={"content": "Nope"})
    assert got.type == "request-failed" and got.content == "Nope"
    assert tm.result_message(msgs, {}, failed=True, server_message="Plain").content == "Plain"
