"""A protocol-faithful FreeSWITCH peer (ESL server + outbound-socket client) for tests and for
running the controller without FreeSWITCH. See ``peer.FreeSwitchPeer``."""

from .connections import OutboundLeg
from .peer import FreeSwitchPeer
from .recorder import CommandLog, ReceivedCommand
from .switch import CallScenario, FakeSwitch

__all__ = [
    "CallScenario",
    "CommandLog",
    "FakeSwitch",
    "FreeSwitchPeer",
    "OutboundLeg",
    "ReceivedCommand",
]
