"""Restart reconciliation: live calls a previous run left behind are re-attached or ended."""

from __future__ import annotations

from test_calls_support import WAIT, Harness

from esl_controller.db.fields import utcnow
from esl_controller.db.models import Call
from esl_controller.testing.model import FakeChannel, new_uuid

NODE = "node-1"


def _row(database, settings, type_, channel_uuid=None, node=NODE, status="in-progress"):
    with database.connection_context():
        return Call.create(
            org_id=settings.org_id,
            type=type_,
            status=status,
            node_id=node,
            channel_uuid=channel_uuid,
            started_at=utcnow(),
        )


def test_restart_reattaches_live_channels_and_ends_the_rest(settings, database, api_key):
    from esl_controller.testing import FreeSwitchPeer

    # The FreeSWITCH that outlived us: one channel still up.
    peer = FreeSwitchPeer()
    peer.start()
    alive = FakeChannel(
        uuid=new_uuid(),
        direction="inbound",
        caller_number="+15551230001",
        destination_number="15557654321",
        answer_state="answered",
        call_state="ACTIVE",
    )
    runner = peer.switch.new_channel(alive)
    kept = _row(database, settings, "inboundPhoneCall", alive.uuid)
    gone = _row(database, settings, "outboundPhoneCall", new_uuid())
    web = _row(database, settings, "webCall")
    other = _row(database, settings, "inboundPhoneCall", new_uuid(), node="node-2")
    done = _row(database, settings, "inboundPhoneCall", new_uuid(), status="ended")

    h = Harness(settings, database, api_key, peer=peer)
    try:
        assert h.row(gone.id).status == "ended"
        assert h.row(gone.id).ended_reason == "call.in-progress.error-vapifault-worker-died"
        assert "gone" in h.row(gone.id).data["endedMessage"]
        assert h.row(web.id).status == "ended"
        assert "restarted" in h.row(web.id).data["endedMessage"]
        assert h.row(other.id).status == "in-progress"  # another node's call is not ours to end
        assert h.row(done.id).ended_reason is None
        session = h.registry.get(kept.id)
        assert session is not None and session.is_live
        assert peer.commands.wait_for(f"api uuid_exists {alive.uuid}", WAIT)
        # the re-attached call follows the inbound connection's events
        runner.hangup("NORMAL_CLEARING")
        h.wait_ended(session)
        assert h.row(kept.id).ended_reason == "customer-ended-call"
    finally:
        h.close()


def test_restart_without_freeswitch_ends_live_calls(settings, database, api_key):
    row = _row(database, settings, "inboundPhoneCall", new_uuid())
    h = Harness(settings, database, api_key, freeswitch=False)
    try:
        updated = h.row(row.id)
        assert updated.status == "ended"
        assert updated.ended_reason == "call.in-progress.error-vapifault-worker-died"
        assert updated.ended_at is not None
    finally:
        h.close()
