"""Shared harness for the call control-plane tests: the real controller (outbound-socket server,
inbound ESL connection, fork server, registry, call service) and the API app, against the fake
FreeSWITCH on ephemeral loopback ports. No tests here."""

from __future__ import annotations

import dataclasses

from esl_controller.calls.state import ENDED
from esl_controller.testing import FreeSwitchPeer

WAIT = 10.0


class Harness:
    def __init__(
        self,
        settings,
        database,
        api_key,
        *,
        freeswitch: bool = True,
        hook_secret: str = "",
        peer=None,
        pipeline: bool = False,
        **fs_over,
    ) -> None:
        from api import create_app
        from esl_controller.controller import Controller

        self.peer = peer
        if peer is None:
            self.peer = FreeSwitchPeer(password="ClueCon")
            self.peer.start()
        fs = dataclasses.replace(
            settings.freeswitch,
            enabled=freeswitch,
            port=self.peer.port,
            outbound_port=0,
            fork_port=0,
            command_timeout=1.0,
            **fs_over,
        )
        calls = dataclasses.replace(settings.calls, end_grace_seconds=1.0, control_timeout=5.0)
        auth = dataclasses.replace(settings.auth, hook_secret=hook_secret)
        # the control plane alone unless asked (the e2e tests pass pipeline=True)
        media = dataclasses.replace(settings.media, pipeline_enabled=pipeline)
        self.settings = dataclasses.replace(
            settings, freeswitch=fs, calls=calls, auth=auth, media=media
        )
        self.database = database
        self.controller = Controller(self.settings)
        self.service = self.controller.start()
        self.app = create_app(self.settings)
        self.app.config["TESTING"] = True
        self.controller.install(self.app.extensions["esl_controller"])
        self.client = self.app.test_client()
        self.client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
        if freeswitch:
            assert self.controller.inbound.wait_connected(WAIT)
        assert self.controller.reconciled.wait(WAIT)

    @property
    def registry(self):
        return self.controller.registry

    @property
    def socket_port(self) -> int:
        return self.controller.outbound.port

    def place_call(self, **kwargs):
        return self.peer.place_call("127.0.0.1", self.socket_port, **kwargs)

    def session_for_channel(self, uuid: str):
        session = self.registry.wait_for(lambda: self.registry.by_channel(uuid), WAIT)
        assert session is not None, f"no session for channel {uuid}"
        return session

    def session(self, call_id: str):
        session = self.registry.wait_for(lambda: self.registry.get(call_id), WAIT)
        assert session is not None, f"no session for call {call_id}"
        return session

    def wait_status(self, session, status: str) -> None:
        assert session.wait_until(lambda s: s.status == status, WAIT), (
            f"call {session.call_id} is {session.state.status}, expected {status}"
        )

    def wait_ended(self, session) -> None:
        self.wait_status(session, ENDED)
        assert session.wait(WAIT), "session did not finish"

    def row(self, call_id: str):
        from esl_controller.db.models import Call

        with self.database.connection_context():
            return Call.get_by_id(call_id)

    def events(self, call_id: str) -> list:
        from esl_controller.db.models import CallEvent

        with self.database.connection_context():
            return list(CallEvent.select().where(CallEvent.call == call_id).order_by(CallEvent.id))

    def close(self) -> None:
        self.controller.stop(timeout=3)
        self.peer.stop()


def make_phone_number(
    database,
    number="+15557654321",
    *,
    assistant=True,
    credential=True,
    server_url=None,
    sip_uri=None,
):
    from esl_controller.db.models import Assistant, Credential, PhoneNumber

    org = "00000000-0000-4000-8000-000000000000"
    with database.connection_context():
        a = Assistant.create(org_id=org, name="a", data={"name": "a", "maxDurationSeconds": 300})
        c = (
            Credential.create(org_id=org, provider="byo-sip-trunk", secret_blob="x", redacted={})
            if credential
            else None
        )
        data = {"server": {"url": server_url, "timeoutSeconds": 1}} if server_url else {}
        return PhoneNumber.create(
            org_id=org,
            provider="byo-phone-number",
            number=number,
            sip_uri=sip_uri,
            assistant=a if assistant else None,
            credential=c,
            data=data,
        )


def run_harness(settings, database, api_key, **kwargs):
    """Generator for a module's ``harness`` fixture: ``yield from run_harness(...)``."""
    h = Harness(settings, database, api_key, **kwargs)
    try:
        yield h
    finally:
        h.close()


def run_pipeline_harness(settings, database, api_key):
    """``run_harness`` for end-to-end calls: the voice pipeline on, the web-call and listen servers on
    ephemeral ports, whisper loaded on first use (not warmed at start)."""
    import dataclasses

    media = dataclasses.replace(settings.media, webcall_port=0, listen_port=0, warm_stt=False)
    yield from run_harness(
        dataclasses.replace(settings, media=media), database, api_key, pipeline=True
    )
