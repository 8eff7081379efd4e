"""Phone number bodies (api-compat.md §5), a union by ``provider``."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, RootModel, model_validator

from api.schemas.common import (
    E164,
    E164_RE,
    Name,
    Open,
    Response,
    ServerConfig,
    SipUri,
    Strict,
    UUIDStr,
)

PROVIDERS = ("byo-phone-number", "vapi", "twilio", "vonage", "telnyx")
#: a non-E.164 number (``numberE164CheckEnabled: false``): digits with an optional leading +
LOOSE_NUMBER_RE = re.compile(r"^\+?[0-9]{1,32}$")


class NumberDestination(Open):
    type: Literal["number"]
    number: Annotated[str, Field(min_length=1, max_length=40)]
    number_e164_check_enabled: bool | None = None
    extension: Annotated[str, Field(max_length=20, pattern=r"^[0-9*#wW,]*$")] | None = None

    @model_validator(mode="after")
    def _check(self) -> NumberDestination:
        pattern = E164_RE if self.number_e164_check_enabled is not False else LOOSE_NUMBER_RE
        if not pattern.match(self.number):
            raise ValueError("number must be an E.164 number like +14155550123")
        return self


class SipDestination(Open):
    type: Literal["sip"]
    sip_uri: SipUri
    sip_headers: dict[str, Any] | None = None


FallbackDestination = Annotated[NumberDestination | SipDestination, Field(discriminator="type")]


class SipAuthentication(Strict):
    realm: Annotated[str, Field(max_length=255)] | None = None
    username: Annotated[str, Field(min_length=1, max_length=255)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class _PhoneNumber(Strict):
    SECRET_PATHS: ClassVar[tuple[tuple[str, ...], ...]] = ()
    #: providers whose credentials a ``credentialId`` may name (empty: none allowed to be checked)
    CREDENTIAL_PROVIDERS: ClassVar[tuple[str, ...]] = ()
    name: Name | None = None
    assistant_id: UUIDStr | None = None
    squad_id: UUIDStr | None = None
    workflow_id: UUIDStr | None = None
    server: ServerConfig | None = None
    fallback_destination: FallbackDestination | None = None
    hooks: Annotated[list[dict[str, Any]], Field(max_length=50)] | None = None


class ByoPhoneNumber(_PhoneNumber):
    CREDENTIAL_PROVIDERS = ("byo-sip-trunk",)
    provider: Literal["byo-phone-number"]
    credential_id: UUIDStr
    number: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    number_e164_check_enabled: bool | None = None

    @model_validator(mode="after")
    def _number(self) -> ByoPhoneNumber:
        if self.number is not None:
            strict = self.number_e164_check_enabled is not False
            if strict and not E164_RE.match(self.number):
                raise ValueError(
                    "number must be an E.164 number like +14155550123 "
                    "(set numberE164CheckEnabled: false for other numbers)"
                )
            if not strict and not LOOSE_NUMBER_RE.match(self.number):
                raise ValueError("number may hold only digits and a leading + (at most 32 digits)")
        return self


class VapiPhoneNumber(_PhoneNumber):
    SECRET_PATHS = (("authentication", "password"),)
    provider: Literal["vapi"]
    #: required here: this server does not provision numbers, so a vapi number is a SIP URI
    sip_uri: SipUri
    authentication: SipAuthentication | None = None
    number_desired_area_code: Annotated[str, Field(pattern=r"^[0-9]{3}$")] | None = None
    credential_id: UUIDStr | None = None


class TwilioPhoneNumber(_PhoneNumber):
    SECRET_PATHS = (("twilioAuthToken",), ("twilioApiSecret",))
    CREDENTIAL_PROVIDERS = ("twilio",)
    provider: Literal["twilio"]
    number: E164
    twilio_account_sid: Annotated[str, Field(min_length=1, max_length=64)]
    twilio_auth_token: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    twilio_api_key: Annotated[str, Field(max_length=200)] | None = None
    twilio_api_secret: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    sms_enabled: bool | None = None
    credential_id: UUIDStr | None = None


class VonagePhoneNumber(_PhoneNumber):
    CREDENTIAL_PROVIDERS = ("vonage",)
    provider: Literal["vonage"]
    number: E164
    credential_id: UUIDStr


class TelnyxPhoneNumber(_PhoneNumber):
    CREDENTIAL_PROVIDERS = ("telnyx",)
    provider: Literal["telnyx"]
    number: E164
    credential_id: UUIDStr


PHONE_NUMBER_MODELS: dict[str, type[_PhoneNumber]] = {
    "byo-phone-number": ByoPhoneNumber,
    "vapi": VapiPhoneNumber,
    "twilio": TwilioPhoneNumber,
    "vonage": VonagePhoneNumber,
    "telnyx": TelnyxPhoneNumber,
}


class PhoneNumberCreate(
    RootModel[
        Annotated[
            ByoPhoneNumber
            | VapiPhoneNumber
            | TwilioPhoneNumber
            | VonagePhoneNumber
            | TelnyxPhoneNumber,
            Field(discriminator="provider"),
        ]
    ]
):
    """The create body (documentation; the route dispatches on ``provider`` itself)."""


class PhoneNumberEnvelope(Open):
    provider: Annotated[str, Field(max_length=32)]


class PhoneNumberPatch(Open):
    provider: Annotated[str, Field(max_length=32)] | None = None


class PhoneNumberResponse(Response):
    provider: str
    status: str
    number: str | None = None
    sip_uri: str | None = None
    assistant_id: str | None = None
    credential_id: str | None = None


def digits_forms(number: str) -> list[str]:
    """The stored forms a dialed number may match: as given, with and without the leading +."""
    bare = number[1:] if number.startswith("+") else number
    return list(dict.fromkeys([number, bare, "+" + bare]))
