"""The model's tool list from inline tools, toolIds and the assistant's switches (pure)."""

import pytest

from esl_controller.pipeline.tools.spec import ToolsetError, build_toolset, destination_key

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    "server": {"url": "https://tools.example.com/hook", "secretSealed": "gAAAA-sealed"},
    "messages": [{"type": "request-start", "content": "Checking."}],
}
STORED = {
    "t-1": {
        "id": "t-1",
        "type": "transferCall",
        "destinations": [
            {"type": "number", "number": "+15550101", "description": "sales"},
            {"type": "sip", "sipUri": "sip:support@pbx.example.com"},
        ],
    },  # fmt: skip
    "t-2": {
        "id": "t-2",
        "type": "apiRequest",
        "name": "look up order",
        "method": "GET",
        "url": "https://api.example.com/o/{{id}}",
        "body": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "k": {"type": "string", "value": "x"}},
        },
    },  # fmt: skip
    "t-3": {"id": "t-3", "type": "query", "knowledgeBases": []},
}


def load(tool_id):
    return STORED.get(tool_id)


def test_inline_and_stored_tools_in_order_with_schemas():
    ts = build_toolset({"tools": [WEATHER, {"type": "endCall"}], "toolIds": ["t-1", "t-2"]}, load)
    assert ts.names == ("get_weather", "endCall", "transferCall", "look_up_order")
    tools = ts.openai_tools()
    assert tools[0] == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    transfer = tools[2]["function"]
    assert transfer["parameters"]["properties"]["destination"]["enum"] == [
        "+15550101",
        "sip:support@pbx.example.com",
    ]
    assert transfer["parameters"]["required"] == ["destination"]
    assert "sales" in transfer["description"]
    api = tools[3]["function"]
    assert api["parameters"] == {"type": "object", "properties": {"id": {"type": "string"}}}
    assert ts.get("transferCall").tool_id == "t-1"
    assert ts.get("transferCall").source == "toolIds"
    assert ts.get("nope") is None


def test_public_definition_hides_sealed_secrets():
    ts = build_toolset({"tools": [WEATHER]})
    public = ts.definitions()["get_weather"]
    assert public["server"] == {"url": "https://tools.example.com/hook"}
    assert ts.get("get_weather").definition["server"]["secretSealed"] == "gAAAA-sealed"


def test_missing_tool_ids_are_a_clear_error():
    with pytest.raises(ToolsetError, match="t-404, t-405 not found"):
        build_toolset({"toolIds": ["t-1", "t-404", "t-405"]}, load)
    with pytest.raises(ToolsetError, match="t-1 not found"):
        build_toolset({"toolIds": ["t-1"]}, None)


def test_unsupported_types_are_skipped_and_reported():
    ts = build_toolset({"toolIds": ["t-3"]}, load)
    assert ts.tools == ()
    assert ts.skipped == (("tool t-3", "tool type 'query' is not supported during calls"),)


def test_name_collisions():
    other = {"type": "function", "function": {"name": "get_weather"}}
    with pytest.raises(ToolsetError, match="both called 'get_weather'"):
        build_toolset({"tools": [WEATHER, other]})
    # the same stored tool twice, or an identical inline definition, counts once
    ts = build_toolset({"tools": [WEATHER, dict(WEATHER)], "toolIds": ["t-1", "t-1"]}, load)
    assert ts.names == ("get_weather", "transferCall")
    # two different endCall tools collide too
    with pytest.raises(ToolsetError):
        build_toolset({"tools": [{"type": "endCall"}, {"type": "endCall", "messages": [{}]}]})


def test_bad_names():
    with pytest.raises(ToolsetError, match="needs function.name"):
        build_toolset({"tools": [{"type": "function", "function": {}}]})
    with pytest.raises(ToolsetError, match="must be 1-64"):
        build_toolset({"tools": [{"type": "function", "function": {"name": "has space"}}]})


def test_legacy_assistant_switches():
    assistant = {
        "endCallFunctionEnabled": True,
        "dialKeypadFunctionEnabled": True,
        "forwardingPhoneNumber": "+15550199",
    }
    ts = build_toolset({}, assistant=assistant)
    assert ts.names == ("endCall", "dtmf", "transferCall")
    assert ts.get("transferCall").destinations[0]["number"] == "+15550199"
    assert ts.get("dtmf").schema["function"]["parameters"]["required"] == ["digits"]
    # an explicit endCall tool wins over the switch
    ts = build_toolset({"tools": [{"type": "endCall", "function": {"name": "hang_up"}}]},
                       assistant=assistant)  # fmt: skip
    assert ts.names == ("hang_up", "dtmf", "transferCall")


def test_handoff_and_custom_function_overrides():
    handoff = {
        "type": "handoff",
        "destinations": [
            {"type": "assistant", "assistantName": "Billing", "description": "money"},
            {"type": "assistant", "assistantId": "a-2"},
        ],
    }
    ts = build_toolset({"tools": [handoff]})
    fn = ts.openai_tools()[0]["function"]
    assert fn["name"] == "handoff"
    assert fn["parameters"]["properties"]["destination"]["enum"] == ["Billing", "a-2"]
    custom = {
        "type": "endCall",
        "function": {"name": "bye", "description": "Say bye", "strict": True},
    }
    fn = build_toolset({"tools": [custom]}).openai_tools()[0]["function"]
    assert fn["description"] == "Say bye" and fn["strict"] is True


def test_destination_key():
    assert destination_key({"type": "number", "number": "+1"}) == "+1"
    assert destination_key({"sipUri": "sip:a@b"}) == "sip:a@b"
    assert destination_key({"type": "assistant", "assistantId": "x"}) == "x"
