"""Per-call captures: start, follow media changes, stop; one sniffer process per call.

I/O module, safe under gevent (it uses ``subprocess``, ``threading`` and ``queue``, which
``monkey.patch_all()`` makes cooperative) and without it. Nothing here raises into the call: every
public method returns a :class:`CaptureStatus`, whose ``state`` is ``running``, ``sealed`` or
``failed`` and whose ``reason`` says why a capture failed or how it was sealed.

Files land in ``<directory>/<call_id>.pcap``. Limits: bytes and seconds per capture (the sniffer
seals itself), concurrent captures (``max_concurrent``), files kept (``max_files``, oldest removed
first) and free disk (``min_free_bytes``: no new capture below it; a capture that hits a full disk
seals itself with ``disk-full`` and the call goes on).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from esl_controller.capture.filters import (
    DEFAULT_SIP_PORTS,
    CaptureTarget,
    FilterError,
    target_from_channel,
)

log = logging.getLogger("esl_controller.capture")

_CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclasses.dataclass(frozen=True)
class CaptureSettings:
    #: capture calls whose assistant does not say (artifactPlan.pcapEnabled wins when set)
    enabled: bool = False
    #: capture on this interface instead of the route towards the far end
    interface: str = ""
    #: FreeSWITCH's SIP signalling ports (its sofia profiles)
    sip_ports: tuple[int, ...] = DEFAULT_SIP_PORTS
    max_bytes: int = 50 * 1024 * 1024
    max_seconds: float = 4 * 3600.0
    #: each capture is a process of about 68 MB RSS (scapy + pyroute2 imported)
    max_concurrent: int = 20
    max_files: int = 1000
    min_free_bytes: int = 512 * 1024 * 1024
    #: seconds to wait for a sniffer to be ready, to acknowledge an update, or to seal
    start_timeout: float = 10.0
    command_timeout: float = 5.0
    #: capture inside this named network namespace (FreeSWITCH in a container; tests)
    netns: str = ""


@dataclasses.dataclass(frozen=True)
class CaptureStatus:
    call_id: str
    #: running | sealed | failed
    state: str
    path: str | None = None
    #: why it failed, or how it was sealed (stopped, max-bytes, max-duration, disk-full, ...)
    reason: str = ""
    interface: str = ""
    filter: str = ""
    packets: int = 0
    bytes: int = 0


class _Capture:
    def __init__(self, call_id: str, path: Path, proc: subprocess.Popen[bytes]) -> None:
        self.call_id = call_id
        self.path = path
        self.proc = proc
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.status = CaptureStatus(call_id, "starting", str(path))

    def set(self, **changes: Any) -> CaptureStatus:
        with self.lock:
            self.status = dataclasses.replace(self.status, **changes)
            return self.status

    def send(self, **command: Any) -> bool:
        stdin = self.proc.stdin
        if stdin is None or stdin.closed:
            return False
        try:
            stdin.write(json.dumps(command, separators=(",", ":")).encode() + b"\n")
            stdin.flush()
        except (OSError, ValueError):
            return False
        return True


class CaptureManager:
    def __init__(
        self,
        directory: str | Path,
        settings: CaptureSettings = CaptureSettings(),  # noqa: B008 (frozen)
        launcher: Sequence[str] = (sys.executable,),
    ) -> None:
        self.directory = Path(directory)
        self.settings = settings
        #: command that runs Python for the sniffer (a test may prefix it, e.g. with setpriv)
        self.launcher = tuple(launcher)
        self._captures: dict[str, _Capture] = {}
        self._failed: dict[str, CaptureStatus] = {}
        self._lock = threading.Lock()

    # -- public interface --------------------------------------------------------------------------
    def start(self, call_id: str, channel: Mapping[str, str]) -> CaptureStatus:
        """Start capturing a call from its channel variables (``variable_sip_call_id`` required;
        media ports optional, see :meth:`update_media`). Returns once the sniffer is ready."""
        try:
            return self._start(call_id, channel)
        except Exception as exc:  # never into the call
            log.exception("capture of call %s failed to start", call_id)
            return self._fail(call_id, f"capture failed to start: {exc}")

    def update_media(self, call_id: str, channel: Mapping[str, str]) -> CaptureStatus | None:
        """Follow new media addresses (answer, re-INVITE). None if the call has no capture."""
        cap = self._captures.get(call_id)
        if cap is None:
            return self._failed.get(call_id)
        if cap.status.state != "running":
            return cap.status
        try:
            target = target_from_channel(channel, self.settings.sip_ports)
        except FilterError as exc:
            log.warning("capture of call %s not updated: %s", call_id, exc)
            return cap.status
        if not cap.send(op="update", target=target.to_dict()):
            return cap.status
        event = self._next_event(cap, self.settings.command_timeout)
        if event.get("event") == "updated":
            return cap.set(filter=str(event.get("filter", "")))
        log.warning("capture of call %s not updated: %s", call_id, event.get("reason", event))
        return cap.status

    def stop(self, call_id: str, timeout: float | None = None) -> CaptureStatus | None:
        """Stop and seal the capture (idempotent). None if the call has no capture."""
        cap = self._captures.get(call_id)
        if cap is None:
            return self._failed.get(call_id)
        timeout = self.settings.command_timeout if timeout is None else timeout
        if not cap.done.is_set():
            cap.send(op="stop")
            self._close_stdin(cap)
            if not cap.done.wait(timeout):
                log.warning("capture of call %s did not seal in %.1fs: killed", call_id, timeout)
                cap.proc.kill()
                cap.done.wait(timeout)
                if cap.status.state not in ("sealed", "failed"):
                    cap.set(state="sealed", reason="killed")
        self._reap(cap)
        return cap.status

    def wait_sealed(self, call_id: str, timeout: float) -> CaptureStatus | None:
        """Wait until a capture seals itself (a limit) or is stopped."""
        cap = self._captures.get(call_id)
        if cap is None:
            return self._failed.get(call_id)
        cap.done.wait(timeout)
        return cap.status

    def status(self, call_id: str) -> CaptureStatus | None:
        cap = self._captures.get(call_id)
        return cap.status if cap is not None else self._failed.get(call_id)

    def pcap_path(self, call_id: str) -> Path | None:
        """The call's pcap file if there is one (also from before a restart)."""
        if not _CALL_ID.match(call_id):
            return None
        path = self.directory / f"{call_id}.pcap"
        return path if path.is_file() else None

    @property
    def active(self) -> int:
        return sum(1 for c in self._captures.values() if not c.done.is_set())

    def stop_all(self, timeout: float | None = None) -> None:
        for call_id in list(self._captures):
            self.stop(call_id, timeout)

    # -- internals ---------------------------------------------------------------------------------
    def _fail(self, call_id: str, reason: str) -> CaptureStatus:
        log.warning("no capture for call %s: %s", call_id, reason)
        status = CaptureStatus(call_id, "failed", None, reason)
        self._failed[call_id] = status
        return status

    def _start(self, call_id: str, channel: Mapping[str, str]) -> CaptureStatus:
        existing = self._captures.get(call_id)
        if existing is not None:
            return existing.status
        if not _CALL_ID.match(call_id):
            return self._fail(call_id, "call id not usable as a file name")
        try:
            target = target_from_channel(channel, self.settings.sip_ports)
        except FilterError as exc:
            return self._fail(call_id, f"no capture target: {exc}")
        with self._lock:
            if self.active >= self.settings.max_concurrent:
                return self._fail(
                    call_id, f"concurrent capture limit reached ({self.settings.max_concurrent})"
                )
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                free = shutil.disk_usage(self.directory).free
            except OSError as exc:
                return self._fail(call_id, f"capture directory unusable: {exc}")
            if free < self.settings.min_free_bytes:
                return self._fail(call_id, f"low disk space ({free} bytes free)")
            self._rotate()
            path = self.directory / f"{call_id}.pcap"
            try:
                proc = subprocess.Popen(
                    self._command(path, target),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            except OSError as exc:
                return self._fail(call_id, f"cannot run the sniffer: {exc}")
            cap = _Capture(call_id, path, proc)
            self._captures[call_id] = cap
        threading.Thread(target=self._read_events, args=(cap,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(cap,), daemon=True).start()
        event = self._next_event(cap, self.settings.start_timeout)
        if event.get("event") == "ready":
            log.info("capturing call %s on %s into %s", call_id, event.get("interface"), path)
            return cap.set(
                state="running",
                interface=str(event.get("interface", "")),
                filter=str(event.get("filter", "")),
            )
        reason = str(event.get("reason") or "sniffer did not start")
        cap.proc.kill()
        cap.done.wait(self.settings.command_timeout)
        self._reap(cap)
        del self._captures[call_id]
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        return self._fail(call_id, reason)

    def _command(self, path: Path, target: CaptureTarget) -> list[str]:
        s = self.settings
        cmd = [
            *self.launcher,
            "-m",
            "esl_controller.capture.sniffer",
            "--path",
            str(path),
            "--target",
            json.dumps(target.to_dict(), separators=(",", ":")),
            "--max-bytes",
            str(s.max_bytes),
            "--max-seconds",
            str(s.max_seconds),
        ]
        if s.interface:
            cmd += ["--interface", s.interface]
        if s.netns:
            cmd += ["--netns", s.netns]
        return cmd

    def _rotate(self) -> None:
        """Keep at most max_files - 1 finished pcaps, removing the oldest."""
        running = {c.path for c in self._captures.values() if not c.done.is_set()}
        try:
            files = [p for p in self.directory.glob("*.pcap") if p not in running]
            files.sort(key=lambda p: p.stat().st_mtime)
        except OSError as exc:
            log.warning("capture rotation skipped: %s", exc)
            return
        excess = len(files) - (self.settings.max_files - 1)
        for old in files[: max(excess, 0)]:
            try:
                old.unlink()
                log.info("capture rotation removed %s", old.name)
            except OSError as exc:
                log.warning("capture rotation: %s", exc)

    def _next_event(self, cap: _Capture, timeout: float) -> dict[str, Any]:
        try:
            return cap.events.get(timeout=timeout)
        except queue.Empty:
            return {"event": "timeout", "reason": f"sniffer did not answer within {timeout:.1f}s"}

    def _read_events(self, cap: _Capture) -> None:
        stdout = cap.proc.stdout
        assert stdout is not None
        try:
            for raw in stdout:
                try:
                    event = json.loads(raw)
                except ValueError:
                    log.warning("capture %s: unreadable line from sniffer", cap.call_id)
                    continue
                kind = event.get("event")
                if kind == "sealed":
                    cap.set(
                        state="sealed",
                        reason=str(event.get("reason", "")),
                        packets=int(event.get("packets", 0)),
                        bytes=int(event.get("bytes", 0)),
                    )
                    log.info(
                        "capture of call %s sealed (%s): %s packets, %s bytes",
                        cap.call_id,
                        event.get("reason"),
                        event.get("packets"),
                        event.get("bytes"),
                    )
                elif kind == "warning":
                    log.warning("capture of call %s: %s", cap.call_id, event.get("reason"))
                else:
                    cap.events.put(event)
        except (OSError, ValueError) as exc:
            log.warning("capture %s: reading the sniffer failed: %s", cap.call_id, exc)
        finally:
            code = cap.proc.wait()
            if cap.status.state in ("starting", "running"):
                reason = f"sniffer exited with status {code}"
                cap.set(
                    state="sealed" if cap.status.state == "running" else "failed", reason=reason
                )
                cap.events.put({"event": "error", "reason": reason})
            cap.done.set()

    def _read_stderr(self, cap: _Capture) -> None:
        stderr = cap.proc.stderr
        assert stderr is not None
        try:
            for raw in stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    log.debug("sniffer %s: %s", cap.call_id, line)
        except (OSError, ValueError):
            pass

    @staticmethod
    def _close_stdin(cap: _Capture) -> None:
        try:
            if cap.proc.stdin is not None:
                cap.proc.stdin.close()
        except OSError:
            pass

    def _reap(self, cap: _Capture) -> None:
        self._close_stdin(cap)
        for stream in (cap.proc.stdout, cap.proc.stderr):
            if stream is not None and cap.done.is_set():
                try:
                    stream.close()
                except OSError:
                    pass
