"""All models, one module per aggregate. ``ALL_MODELS`` is in dependency order."""

from esl_controller.db.models.api_keys import ApiKey
from esl_controller.db.models.calls import Artifact, Call, CallEvent, CallMessage, CostItem
from esl_controller.db.models.resources import (
    Assistant,
    Credential,
    File,
    PhoneNumber,
    StructuredOutput,
    StructuredOutputRun,
    Tool,
    WebhookEndpoint,
)
from esl_controller.db.models.webhooks import WebhookAttempt, WebhookJob

ALL_MODELS = [
    ApiKey,
    Credential,
    Assistant,
    PhoneNumber,
    Tool,
    WebhookEndpoint,
    File,
    StructuredOutput,
    Call,
    CallMessage,
    CallEvent,
    Artifact,
    CostItem,
    StructuredOutputRun,
    WebhookJob,
    WebhookAttempt,
]

__all__ = [m.__name__ for m in ALL_MODELS] + ["ALL_MODELS"]
