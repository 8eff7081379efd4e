"""Assistant config view: Vapi defaults, overrides, legacy silence fields, hooks."""

import pytest

from esl_controller.pipeline.assistant import AssistantConfig, AssistantConfigError, merge_overrides


def test_defaults():
    cfg = AssistantConfig.from_dict({})
    assert cfg.first_message_mode == "assistant-speaks-first"
    assert cfg.max_duration_seconds == 600
    assert cfg.idle.silence_timeout_seconds == 30
    assert cfg.idle.messages == () and cfg.idle.timeout_seconds is None
    assert cfg.wait_seconds == 0.4
    assert cfg.stop_speaking_plan.num_words == 0


def test_fields_and_overrides():
    base = {
        "firstMessage": "Hi {{name}}",
        "endCallPhrases": ["Goodbye", " "],
        "model": {
            "provider": "custom-llm",
            "model": "scripted",
            "messages": [{"role": "system", "content": "S"}],
        },
        "stopSpeakingPlan": {"numWords": 2, "backoffSeconds": 0.5},
        "startSpeakingPlan": {"waitSeconds": 0.6},
    }
    cfg = AssistantConfig.from_dict(
        base,
        {
            "variableValues": {"name": "Ann"},
            "maxDurationSeconds": 30,
            "model": {"temperature": 0.2},
        },
    )
    assert cfg.variables == {"name": "Ann"}
    assert cfg.max_duration_seconds == 30
    assert cfg.model["model"] == "scripted" and cfg.temperature == 0.2
    assert cfg.system_prompt == "S"
    assert cfg.end_call_phrases == ("Goodbye",)
    assert cfg.stop_speaking_plan.num_words == 2 and cfg.stop_speaking_plan.backoff_seconds == 0.5
    assert cfg.wait_seconds == 0.6


def test_tools_append():
    merged = merge_overrides(
        {"model": {"tools": [{"type": "endCall"}]}}, {"tools:append": [{"type": "dtmf"}]}
    )
    assert merged["model"]["tools"] == [{"type": "endCall"}, {"type": "dtmf"}]


def test_silence_hook_and_legacy():
    cfg = AssistantConfig.from_dict(
        {
            "silenceTimeoutSeconds": 45,
            "hooks": [
                {
                    "on": "customer.speech.timeout",
                    "options": {"timeoutSeconds": 8, "triggerMaxCount": 2},
                    "do": [{"type": "say", "exact": ["Still there?", "Hello?"]}],
                }
            ],
        }
    )
    assert cfg.idle.timeout_seconds == 8
    assert cfg.idle.messages == ("Still there?", "Hello?")
    assert cfg.idle.max_count == 2
    assert cfg.idle.silence_timeout_seconds == 45
    ending = AssistantConfig.from_dict(
        {
            "hooks": [
                {
                    "on": "customer.speech.timeout",
                    "options": {"timeoutSeconds": 5},
                    "do": [{"type": "endCall"}],
                }
            ]
        }
    )
    assert ending.idle.end_on_timeout and ending.idle.timeout_seconds == 5


@pytest.mark.parametrize("body", [{"firstMessageMode": "sing"}, {"maxDurationSeconds": 0}])
def test_invalid(body):
    with pytest.raises(AssistantConfigError):
        AssistantConfig.from_dict(body)
