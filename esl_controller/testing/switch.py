"""The fake switch core: channels, the apps they run, API commands, originate scenarios.

Events are built by ``model.EventFactory`` and delivered to every subscribed connection
(inbound ESL connections and outbound-socket legs), each of which applies its own filter.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import gevent
import gevent.event
from gevent.queue import Queue

from .model import EventFactory, FakeChannel, fs_split, new_uuid, parse_originate
from .recorder import CommandLog

log = logging.getLogger("esl_controller.testing")


@dataclass
class CallScenario:
    """How an originated call (or the far end of one) behaves.

    ``outcome``: ``answer``, ``busy`` (USER_BUSY), ``no_answer`` (NO_ANSWER after ringing),
    ``failure`` (carrier failure, ``cause`` default NORMAL_TEMPORARY_FAILURE), ``reject``
    (CALL_REJECTED). ``gate``: if set, the outcome waits until the test sets it (at most
    ``gate_timeout`` s), so tests can observe the ringing state. ``early_media`` adds
    CHANNEL_PROGRESS_MEDIA after CHANNEL_PROGRESS.
    """

    outcome: str = "answer"
    cause: str = ""
    ring: bool = True
    early_media: bool = False
    gate: gevent.event.Event | None = None
    gate_timeout: float = 30.0


_FAIL_CAUSES = {
    "busy": "USER_BUSY",
    "no_answer": "NO_ANSWER",
    "failure": "NORMAL_TEMPORARY_FAILURE",
    "reject": "CALL_REJECTED",
}


class ChannelRunner:
    """A live fake channel: its state, its app queue (one greenlet) and its controlling sockets."""

    def __init__(self, switch: FakeSwitch, channel: FakeChannel) -> None:
        self.switch = switch
        self.channel = channel
        self.controllers: list = []  # OutboundLeg objects controlling this channel
        self.gone = gevent.event.Event()
        self._apps: Queue = Queue()
        self._break = gevent.event.Event()
        self._greenlet = gevent.spawn(self._run_apps)

    @property
    def uuid(self) -> str:
        return self.channel.uuid

    def fire(
        self,
        name: str,
        extra: Iterable[tuple[str, str]] = (),
        subclass: str = "",
        body: bytes = b"",
    ) -> None:
        self.switch.fire(
            self.switch.factory.channel_event(name, self.channel, extra, subclass), body
        )

    # ------------------------------------------------------------------ state changes
    def ring(self) -> None:
        ch = self.channel
        ch.call_state, ch.progress_us = "RINGING", self.switch.now_us()
        self.fire("CHANNEL_PROGRESS")

    def pre_answer(self) -> None:
        ch = self.channel
        if ch.answer_state in ("ringing",):
            ch.answer_state, ch.call_state = "early", "EARLY"
            self.fire("CHANNEL_PROGRESS_MEDIA")

    def answer(self) -> None:
        ch = self.channel
        if ch.answered or ch.hung_up:
            return
        ch.answered_us = self.switch.now_us()
        ch.answer_state = "answered"
        self.fire("CHANNEL_ANSWER")
        ch.call_state = "ACTIVE"

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        """The channel goes down: CHANNEL_HANGUP, notices to controlling sockets (linger or
        disconnect, section 3.4), CHANNEL_HANGUP_COMPLETE, then the channel is removed."""
        ch = self.channel
        if ch.hung_up:
            return
        ch.hangup_cause = cause
        ch.hangup_us = self.switch.now_us()
        ch.state_number, ch.call_state, ch.answer_state = 10, "HANGUP", "hangup"
        self.fire("CHANNEL_HANGUP")
        for leg in list(self.controllers):
            leg.channel_hung_up()
        ch.state, ch.state_number = "CS_REPORTING", 11
        self.fire("CHANNEL_HANGUP_COMPLETE")
        self._break.set()
        self.gone.set()
        self._apps.put(None)
        self.switch.channels.pop(ch.uuid, None)

    def dtmf(self, digit: str, duration: int = 2000) -> None:
        """The caller pressed a key."""
        self.fire(
            "DTMF",
            [("DTMF-Digit", digit), ("DTMF-Duration", str(duration)), ("DTMF-Source", "RTP")],
        )

    def custom(self, subclass: str, body: bytes = b"") -> None:
        self.fire("CUSTOM", subclass=subclass, body=body)

    def break_playback(self) -> None:
        self._break.set()

    # ------------------------------------------------------------------ apps
    def queue_app(self, app: str, arg: str, event_uuid: str = "") -> None:
        self._apps.put((app, arg, event_uuid or new_uuid()))

    def _run_apps(self) -> None:
        while True:
            item = self._apps.get()
            if item is None or self.channel.hung_up:
                return
            try:
                self._execute(*item)
            except Exception:
                log.exception("fake channel %s: app %s failed", self.uuid, item[0])

    def _execute(self, app: str, arg: str, app_uuid: str) -> None:
        ch = self.channel
        ch.current_app, ch.current_app_data = app, arg
        info = [("Application", app), ("Application-Data", arg), ("Application-UUID", app_uuid)]
        self.fire("CHANNEL_EXECUTE", info)
        response = "_none_"
        if app == "answer":
            self.answer()
        elif app == "pre_answer":
            self.pre_answer()
        elif app == "hangup":
            self.hangup(arg or "NORMAL_CLEARING")
            return
        elif app == "playback":
            response = self._playback(arg)
        elif app == "set" and "=" in arg:
            k, v = arg.split("=", 1)
            ch.variables[k] = v
        elif app == "deflect":
            self.fire("CHANNEL_EXECUTE_COMPLETE", [*info, ("Application-Response", response)])
            self.hangup("BLIND_TRANSFER")
            return
        if ch.hung_up:
            return
        self.fire("CHANNEL_EXECUTE_COMPLETE", [*info, ("Application-Response", response)])

    def _playback(self, path: str) -> str:
        self._break.clear()
        self.fire("PLAYBACK_START", [("Playback-File-Path", path)])
        status = "done"
        if self.switch.playback_blocks:
            if self._break.wait(timeout=self.switch.playback_max_seconds):
                status = "break"
        if self.channel.hung_up:
            return "FILE PLAYED"
        self.fire("PLAYBACK_STOP", [("Playback-File-Path", path), ("Playback-Status", status)])
        return "FILE PLAYED"


class FakeSwitch:
    """Channels and commands of the fake FreeSWITCH. Knobs for tests:

    * ``scenarios[number] = CallScenario(...)`` / ``default_scenario`` for originate;
    * ``stall(prefix)``: a command starting with ``prefix`` hangs its connection (no reply, and
      nothing after it is answered) until ``release_stalls()`` (a hung FreeSWITCH);
    * ``playback_blocks``: playback lasts until uuid_break/hangup (else completes at once);
    * ``audio_fork_connects``: ``uuid_audio_fork start`` fires ``mod_audio_fork::connect``.
    """

    def __init__(self, hostname: str = "fs1") -> None:
        self.factory = EventFactory(hostname=hostname)
        self.channels: dict[str, ChannelRunner] = {}
        self.subscribers: list = []
        self.commands = CommandLog()
        self.scenarios: dict[str, CallScenario] = {}
        self.default_scenario = CallScenario()
        self.stall_prefixes: set[str] = set()
        self.stall_released = gevent.event.Event()
        self.playback_blocks = False
        self.playback_max_seconds = 30.0
        self.audio_fork_connects = True
        self.legs: list = []  # every OutboundLeg created (placed calls and originated ones)
        self.leg_created = gevent.event.Event()

    def stall(self, prefix: str) -> None:
        self.stall_prefixes.add(prefix)
        self.stall_released.clear()

    def release_stalls(self) -> None:
        self.stall_prefixes.clear()
        self.stall_released.set()

    @staticmethod
    def now_us() -> int:
        import time

        return int(time.time() * 1_000_000)

    def fire(self, items: list[tuple[str, str]], body: bytes = b"") -> None:
        for sub in list(self.subscribers):
            sub.deliver(items, body)

    def new_channel(self, channel: FakeChannel) -> ChannelRunner:
        runner = ChannelRunner(self, channel)
        self.channels[channel.uuid] = runner
        return runner

    def channel(self, uuid: str) -> ChannelRunner | None:
        return self.channels.get(uuid)

    def wait_leg(self, timeout: float = 5.0, index: int = 0):
        """The ``index``-th outbound leg created (waits for it)."""
        with gevent.Timeout(timeout, False):
            while len(self.legs) <= index:
                ev = self.leg_created
                if len(self.legs) > index:
                    break
                ev.wait()
        if len(self.legs) <= index:
            raise TimeoutError(f"outbound leg #{index} not created within {timeout}s")
        return self.legs[index]

    def _add_leg(self, leg) -> None:
        self.legs.append(leg)
        ev, self.leg_created = self.leg_created, gevent.event.Event()
        ev.set()

    # ------------------------------------------------------------------ API commands
    def api(self, line: str, owner: str = "") -> str:
        cmd, _, args = line.partition(" ")
        handler = getattr(self, f"_api_{cmd}", None)
        if handler is None:
            return f"-ERR {cmd} Command not found!\n"
        try:
            return handler(args.strip())
        except (ValueError, IndexError) as exc:
            return f"{exc}\n" if str(exc).startswith("-") else f"-USAGE: {cmd} {exc}\n"

    def _runner(self, uuid: str) -> ChannelRunner:
        runner = self.channels.get(uuid)
        if runner is None:
            raise ValueError("-ERR No such channel!")
        return runner

    def _api_status(self, args: str) -> str:
        return f"UP 0 years, 0 days\nFreeSWITCH (Version 1.10.12 fake) is ready\n{len(self.channels)} session(s)\n"

    def _api_uuid_exists(self, args: str) -> str:
        return "true" if args in self.channels else "false"

    def _api_uuid_answer(self, args: str) -> str:
        runner = self.channels.get(args.split(" ")[0])
        if runner is None:
            return "-ERROR\n"
        runner.answer()
        return "+OK\n"

    def _api_uuid_kill(self, args: str) -> str:
        parts = args.split()
        runner = self._runner(parts[0])
        gevent.spawn(runner.hangup, parts[1] if len(parts) > 1 else "NORMAL_CLEARING")
        return "+OK\n"

    def _api_uuid_break(self, args: str) -> str:
        self._runner(args.split(" ")[0]).break_playback()
        return "+OK\n"

    def _api_uuid_broadcast(self, args: str) -> str:
        parts = fs_split(args)
        runner = self.channels.get(parts[0])
        if runner is None:
            return "-ERR invalid uuid\n"
        target = parts[1]
        app, _, arg = target.partition("::") if "::" in target else ("playback", "", target)
        runner.queue_app(app, arg)
        return "+OK Message sent\n"

    def _api_uuid_transfer(self, args: str) -> str:
        parts = fs_split(args)
        runner = self._runner(parts[0])
        runner.channel.variables["transfer_destination"] = parts[1]
        return "+OK\n"

    def _api_uuid_deflect(self, args: str) -> str:
        parts = args.split()
        runner = self.channels.get(parts[0])
        if runner is None:
            return f"-ERR No such channel {parts[0]}!\n"
        runner.queue_app("deflect", parts[1])
        return "+OK:no reply\n"

    def _api_uuid_send_dtmf(self, args: str) -> str:
        uuid, digits = args.split(" ", 1)
        if uuid not in self.channels:
            return "-ERR Cannot locate session!\n"
        return f"+OK {uuid} sent DTMF {digits}.\n"

    def _api_uuid_setvar(self, args: str) -> str:
        parts = args.split(" ", 2)
        runner = self._runner(parts[0])
        if len(parts) > 2:
            runner.channel.variables[parts[1]] = parts[2]
        else:
            runner.channel.variables.pop(parts[1], None)
        return "+OK\n"

    def _api_uuid_getvar(self, args: str) -> str:
        uuid, name = args.split(" ", 1)
        runner = self._runner(uuid)
        merged = dict(runner.channel.base_variables())
        merged.update(runner.channel.variables)
        return merged.get(name, "_undef_")

    def _api_uuid_record(self, args: str) -> str:
        parts = fs_split(args)
        runner = self.channels.get(parts[0])
        if runner is None:
            return "-ERR Cannot locate session!\n"
        action, path = parts[1], parts[2]
        if action == "start":
            runner.fire("RECORD_START", [("Record-File-Path", path)])
        elif action == "stop":
            runner.fire("RECORD_STOP", [("Record-File-Path", path)])
        return "+OK Success\n"

    def _api_uuid_audio_fork(self, args: str) -> str:
        parts = args.split(" ", 6)
        if len(parts) < 2:
            return (
                "-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown ]\n"
            )
        runner = self.channels.get(parts[0])
        if runner is None:
            return "-ERR Operation Failed\n"
        action = parts[1]
        if action == "start":
            if len(parts) < 5:
                return "-USAGE: <uuid> start <wss-url> <mix-type> <sampling-rate>\n"
            runner.pre_answer()
            if self.audio_fork_connects:
                gevent.spawn(runner.custom, "mod_audio_fork::connect")
        return "+OK Success\n"

    def _api_show(self, args: str) -> str:
        if args.replace(" ", "") != "channelsasjson":
            return "-USAGE: show channels as json (fake peer)\n"
        rows = []
        for runner in self.channels.values():
            ch = runner.channel
            rows.append(
                {
                    "uuid": ch.uuid,
                    "direction": ch.direction,
                    "created_epoch": str(ch.created_us // 1_000_000),
                    "name": ch.name,
                    "state": ch.state,
                    "cid_num": ch.caller_number,
                    "dest": ch.destination_number,
                    "application": ch.current_app,
                    "callstate": ch.call_state,
                    "hostname": self.factory.hostname,
                }
            )
        if not rows:
            return json.dumps({"row_count": 0}) + "\n"
        return json.dumps({"row_count": len(rows), "rows": rows}) + "\n"

    def _api_originate(self, args: str) -> str:
        req = parse_originate(args)
        scenario = self.scenarios.get(req.number, self.default_scenario)
        uuid = req.variables.get("origination_uuid") or new_uuid()
        extra_vars = {k: v for k, v in req.variables.items()}
        channel = FakeChannel(
            uuid=uuid,
            direction="outbound",
            caller_number=req.variables.get("origination_caller_id_number", "0000000000"),
            destination_number=req.number,
            gateway=req.gateway,
            variables=extra_vars,
            state="CS_INIT",
            state_number=2,
            call_state="DOWN",
        )
        runner = self.new_channel(channel)
        runner.fire("CHANNEL_CREATE")
        channel.state, channel.state_number = "CS_ROUTING", 3
        if scenario.outcome in ("busy", "failure", "reject"):
            cause = scenario.cause or _FAIL_CAUSES[scenario.outcome]
            runner.hangup(cause)
            return f"-ERR {cause}\n"
        if scenario.ring:
            runner.ring()
            if scenario.early_media:
                runner.pre_answer()
        if scenario.gate is not None:
            scenario.gate.wait(timeout=scenario.gate_timeout)
        if runner.channel.hung_up:  # killed while ringing
            return f"-ERR {runner.channel.hangup_cause}\n"
        if scenario.outcome != "answer":
            cause = scenario.cause or _FAIL_CAUSES.get(scenario.outcome, "NORMAL_TEMPORARY_FAILURE")
            runner.hangup(cause)
            return f"-ERR {cause}\n"
        channel.state, channel.state_number = "CS_EXECUTE", 4
        runner.answer()
        self._start_destination(runner, req.destination)
        return f"+OK {uuid}\n"

    def _start_destination(self, runner: ChannelRunner, dest: str) -> None:
        if dest.startswith("&socket(") and dest.endswith(")"):
            spec = dest[len("&socket(") : -1].split()
            host, _, port = spec[0].rpartition(":")
            from .connections import OutboundLeg

            runner.channel.current_app = "socket"
            runner.channel.current_app_data = " ".join(spec)
            runner.channel.variables["socket_host"] = host
            leg = OutboundLeg(self, runner, host, int(port), async_full=True)
            self._add_leg(leg)
            gevent.spawn(leg.run)
        else:
            runner.channel.current_app = dest.lstrip("&").split("(")[0]
            runner.fire("CHANNEL_PARK")

    def bgapi(self, line: str, job_uuid: str, owner: str = "") -> None:
        """Run ``line`` in a greenlet and fire BACKGROUND_JOB with its output."""

        def job() -> None:
            output = self.api(line, owner)
            cmd, _, arg = line.partition(" ")
            items = self.factory.standard("BACKGROUND_JOB")
            items += [("Job-UUID", job_uuid), ("Job-Owner-UUID", owner), ("Job-Command", cmd)]
            if arg:
                items.append(("Job-Command-Arg", arg))
            self.fire(items, output.encode("utf-8"))

        gevent.spawn(job)

    # ------------------------------------------------------------------ inbound calls
    def place_call(
        self,
        host: str,
        port: int,
        caller: str = "+15551230001",
        destination: str = "15557654321",
        variables: dict[str, str] | None = None,
    ):
        """A carrier call arrives and the dialplan runs ``socket host:port async full``.
        Returns the ``OutboundLeg`` (already connecting, in its own greenlet)."""
        from .connections import OutboundLeg

        channel = FakeChannel(
            uuid=new_uuid(),
            direction="inbound",
            caller_number=caller,
            destination_number=destination,
            variables=dict(variables or {}),
        )
        runner = self.new_channel(channel)
        runner.fire("CHANNEL_CREATE")
        channel.current_app = "socket"
        channel.current_app_data = f"{host}:{port} async full"
        channel.variables["socket_host"] = host
        leg = OutboundLeg(self, runner, host, port, async_full=True)
        self._add_leg(leg)
        gevent.spawn(leg.run)
        return leg
