"""Templating, history views and truncation to what was played."""

import pytest

from esl_controller.pipeline.history import History, render, truncate_to_played


@pytest.mark.parametrize(
    ("text", "variables", "out"),
    [
        ("Hi {{name}}!", {"name": "Ann"}, "Hi Ann!"),
        ("Hi {{ name }}!", {"name": "Ann"}, "Hi Ann!"),
        ("Hi {{name}}!", {}, "Hi {{name}}!"),
        ('Hi {{name | default: "there"}}!', {}, "Hi there!"),
        ("Hi {{name | default: 'there'}}!", {"name": "Bo"}, "Hi Bo!"),
        ("Call {{customer.number}}", {"customer": {"number": "+1555"}}, "Call +1555"),
        ("no templates", {"x": 1}, "no templates"),
    ],
)
def test_render(text, variables, out):
    assert render(text, variables) == out


SENTENCES = [("Hello there.", 1.0), ("We open at nine every day.", 2.0)]


@pytest.mark.parametrize(
    ("played", "text", "cut"),
    [
        (0.0, "", True),
        (0.5, "Hello", True),
        (1.0, "Hello there.", True),
        (2.0, "Hello there. We open at", True),
        (3.0, "Hello there. We open at nine every day.", False),
        (9.0, "Hello there. We open at nine every day.", False),
    ],
)
def test_truncate_to_played(played, text, cut):
    assert truncate_to_played(SENTENCES, played) == (text, cut)


def test_history_views_and_truncation():
    h = History(epoch_ms=1_000_000, variables={"name": "Ann"})
    h.add_system("You help {{name}}.")
    h.add_user("hello", 1.0, 2.0)
    h.add_assistant("Hi Ann, how are you today?", 2.5, 4.5)
    assert h.openai_messages() == [
        {"role": "system", "content": "You help Ann."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hi Ann, how are you today?"},
    ]
    log = h.replace_last_assistant("Hi Ann,", end=3.0)
    assert log["message"] == "Hi Ann," and log["duration"] == 500 and log["endTime"] == 1_003_000
    items = h.log_messages()
    assert [i["role"] for i in items] == ["system", "user", "bot"]
    assert items[1] == {
        "role": "user",
        "message": "hello",
        "time": 1_001_000,
        "endTime": 1_002_000,
        "secondsFromStart": 1.0,
        "duration": 1000,
    }
    assert h.transcript() == "User: hello\nAI: Hi Ann,"
    assert h.last_user_text() == "hello"


def test_tool_messages():
    h = History(epoch_ms=0)
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    h.add_tool_calls([call], "", 1.0)
    h.add_tool_result("c1", "lookup", "42", 1.5)
    msgs = h.openai_messages()
    assert msgs[0]["tool_calls"] == [call] and msgs[0]["role"] == "assistant"
    assert msgs[1] == {"role": "tool", "content": "42", "tool_call_id": "c1"}
    assert [i["role"] for i in h.log_messages()] == ["tool_calls", "tool_call_result"]
