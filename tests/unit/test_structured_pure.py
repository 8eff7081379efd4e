"""The structured-output runner's pure pieces: prompts, schema wrapping, JSON parsing, validation, regex."""

from types import SimpleNamespace

import pytest

from esl_controller.observe import structured as so
from esl_controller.observe.structured import OutputDef

ROWS = [
    SimpleNamespace(role="bot", message="Hello, how can I help?"),
    SimpleNamespace(role="user", message="I'd like a table for 4 at seven thirty."),
    SimpleNamespace(role="tool_calls", message=None),
    SimpleNamespace(role="system", message="internal"),
    SimpleNamespace(role="user", message="My name is Ada."),
]


def test_conversation_keeps_spoken_turns():
    assert so.conversation(ROWS) == [
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "I'd like a table for 4 at seven thirty."},
        {"role": "user", "content": "My name is Ada."},
    ]


def test_request_schema_wraps_non_objects():
    obj = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert so.request_schema(obj) == (obj, False)
    wrapped, flag = so.request_schema({"type": "boolean"})
    assert flag and wrapped["properties"]["result"] == {"type": "boolean"}
    assert wrapped["required"] == ["result"]


def test_parse_json_accepts_fences_and_rejects_prose():
    assert so.parse_json('{"a": 1}') == {"a": 1}
    assert so.parse_json('```json\n{"a": [1, 2]}\n```') == {"a": [1, 2]}
    with pytest.raises(so._Failure) as err:
        so.parse_json("Sure! The caller wants a table.")
    assert "not JSON" in str(err.value) and err.value.retryable


def test_validation_error_names_the_path():
    schema = {
        "type": "object",
        "properties": {"party": {"type": "integer", "minimum": 1}},
        "required": ["party"],
    }
    assert so.validation_error(schema, {"party": 4}) is None
    assert "at party" in so.validation_error(schema, {"party": "four"})
    assert "(root)" in so.validation_error(schema, {})


def test_invalid_schema_is_not_retryable():
    with pytest.raises(so._Failure) as err:
        so.check_schema({"type": "object", "properties": {"a": {"type": 12}}})
    assert not err.value.retryable and "invalid schema" in str(err.value)


@pytest.mark.parametrize(
    ("regex", "schema", "expected"),
    [
        (r"table for (\d+)", {"type": "integer"}, 4),
        (r"table for (\d+)", {"type": "number"}, 4.0),
        (r"/SEVEN THIRTY/i", {"type": "boolean"}, True),
        (r"SEVEN THIRTY", {"type": "boolean"}, False),
        (r"name is (\w+)", {"type": "string"}, "Ada"),
        (r"refund", {"type": "string"}, None),
        (r"\d+", {"type": "array"}, ["4"]),
    ],
)
def test_regex_outputs(regex, schema, expected):
    transcript = "AI: Hello\nUser: I'd like a table for 4 at seven thirty.\nUser: My name is Ada."
    out = OutputDef(id="x", name="x", schema=schema, type="regex", regex=regex)
    assert so.regex_result(out, transcript) == expected


def test_bad_regex_fails_without_retry():
    out = OutputDef(id="x", name="x", schema={"type": "string"}, type="regex", regex="(unclosed")
    with pytest.raises(so._Failure) as err:
        so.regex_result(out, "text")
    assert not err.value.retryable


def test_extraction_messages_default_and_templated():
    talk = so.conversation(ROWS)
    out = OutputDef(id="x", name="booking", schema={"type": "object"}, description="Party size.")
    msgs = so.extraction_messages(out, talk, "User: hi")
    assert msgs[0]["role"] == "system" and "booking" in msgs[0]["content"]
    assert "Party size." in msgs[0]["content"] and msgs[1:] == talk
    custom = OutputDef(
        id="x",
        name="booking",
        schema={"type": "object"},
        model={
            "messages": [
                {"role": "system", "content": "Extract {{structuredOutput.name}}."},
                {"role": "user", "content": "Transcript:\n{{ transcript }}"},
            ]
        },
    )
    assert so.extraction_messages(custom, talk, "User: hi") == [
        {"role": "system", "content": "Extract booking."},
        {"role": "user", "content": "Transcript:\nUser: hi"},
    ]


def test_attempt_retries_only_retryable_failures():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise so._Failure("not yet")
        return "ok"

    assert so._attempt(flaky, 3, 0, lambda n: None) == (True, "ok", 3)
    calls.clear()
    assert so._attempt(flaky, 2, 0, lambda n: None) == (False, "not yet", 2)

    def fatal():
        raise so._Failure("no", retryable=False)

    tries = []
    assert so._attempt(fatal, 5, 0, tries.append) == (False, "no", 1)
    assert tries == [1]

    def bug():
        raise RuntimeError("boom")

    ok, error, n = so._attempt(bug, 3, 0, lambda n: None)
    assert not ok and error == "RuntimeError: boom" and n == 1
