"""The scripted model: rules, prompt-derived rules, variables, tool triggers, structured output."""

import json

import pytest

from esl_controller.pipeline.providers.base import ChatRequest, ModelDone, TextDelta, ToolCallDelta
from esl_controller.pipeline.providers.llm.scripted import (
    ScriptConfigError,
    ScriptedModel,
    rules_from_prompt,
    structured_output,
)

CONFIG = {
    "provider": "custom-llm",
    "model": "scripted",
    "url": "scripted://",
    "rules": [
        {"match": r"table for (?P<party>\w+)", "reply": "A table for {{party}}, {{name}}. What time?"},
        {"keywords": ["human", "real person"], "reply": "Transferring you.",
         "toolCall": {"name": "transferCall", "arguments": {"destination": "{{desk}}"}}},
        {"keywords": ["bye"], "reply": "Goodbye!", "endCall": True},
    ],
    "defaultReply": "Pardon?",
    "greeting": "Hello {{name}}!",
}  # fmt: skip


def ask(model, *user, system="", variables=None):
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": u} for u in user]
    chunks = list(
        model.stream(ChatRequest(messages, metadata={"variables": variables or {}}), timeout=5)
    )
    text = "".join(c.text for c in chunks if isinstance(c, TextDelta))
    tools = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert isinstance(chunks[-1], ModelDone) and sum(isinstance(c, ModelDone) for c in chunks) == 1
    return text, tools, chunks


def test_regex_rule_with_groups_and_variables_streams_word_by_word():
    text, tools, chunks = ask(
        ScriptedModel(CONFIG), "I need a table for four", variables={"name": "Ann"}
    )
    assert text == "A table for four, Ann. What time?"
    assert tools == []
    assert len([c for c in chunks if isinstance(c, TextDelta)]) == 7
    assert chunks[-1].usage.completion_tokens == 7 and chunks[-1].finish_reason == "stop"


def test_keywords_are_whole_words_or_phrases():
    model = ScriptedModel(CONFIG)
    assert ask(model, "can I talk to a real person")[0] == "Transferring you."
    assert ask(model, "humane treatment")[0] == "Pardon?"


def test_tool_call_and_end_call():
    model = ScriptedModel(CONFIG)
    text, tools, chunks = ask(model, "a human please", variables={"desk": "+15551230001"})
    assert tools[0].name == "transferCall"
    assert json.loads("".join(t.arguments for t in tools)) == {"destination": "+15551230001"}
    assert chunks[-1].finish_reason == "tool_calls"
    _, tools, _ = ask(model, "ok bye")
    assert [t.name for t in tools] == ["endCall"]


def test_greeting_when_no_user_message_and_default_reply():
    model = ScriptedModel(CONFIG)
    assert ask(model, system="Be kind.", variables={"name": "Bo"})[0] == "Hello Bo!"
    assert ask(model, "something else")[0] == "Pardon?"


def test_rules_from_system_prompt():
    prompt = (
        "You are a receptionist.\n"
        "When the caller says hours or opening times, reply We open at nine.\n"
        '- If the user says "parking", say: There is parking behind the building.'
    )
    model = ScriptedModel({"model": "scripted"})
    assert ask(model, "what are your opening times", system=prompt)[0] == "We open at nine."
    assert (
        ask(model, "is there parking?", system=prompt)[0] == "There is parking behind the building."
    )
    assert len(rules_from_prompt(prompt)) == 2


def test_bad_rules_rejected():
    with pytest.raises(ScriptConfigError):
        ScriptedModel({"rules": [{"match": "("}]})
    with pytest.raises(ScriptConfigError):
        ScriptedModel({"rules": [{"reply": "no match"}]})


def test_structured_output_from_schema():
    schema = {
        "type": "object",
        "properties": {
            "outcome": {"type": "string", "enum": ["booked", "cancelled", "unknown"]},
            "partySize": {"type": "integer"},
            "wantsParking": {"type": "boolean"},
            "vip": {"type": "boolean"},
            "note": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "source": {"type": "string", "default": "phone"},
        },
    }
    messages = [
        {"role": "user", "content": "A table for 4 please, and I need parking"},
        {"role": "assistant", "content": "Done, you are booked."},
    ]
    assert structured_output(schema, messages) == {
        "outcome": "booked",
        "partySize": 4,
        "wantsParking": True,
        "vip": False,
        "note": "A table for 4 please, and I need parking",
        "tags": [],
        "source": "phone",
    }
    model = ScriptedModel({})
    chunks = list(
        model.stream(ChatRequest(messages, json_schema={"name": "x", "schema": schema}), timeout=5)
    )
    assert json.loads(chunks[0].text)["outcome"] == "booked"
