"""One call's capture: a packet socket with a BPF filter, SIP kept by Call-ID, a pcap written as it goes.

I/O module. A :class:`Sniffer` runs in a process of its own (``python -m
esl_controller.capture.sniffer``, started by :mod:`esl_controller.capture.manager`) so that packet
handling never competes with the controller's gevent hub, and so that it can enter another network
namespace. The child talks JSON lines:

* stdin (commands): ``{"op": "update", "target": {...}}`` (new media after a re-INVITE),
  ``{"op": "stop"}``; end of input means the controller is gone, and the capture is sealed.
* stdout (events): ``{"event": "ready", "interface": ..., "filter": ...}``,
  ``{"event": "updated", "filter": ...}`` or ``{"event": "rejected", "reason": ...}``, ``{"event": "error", "reason": ...}`` (capture could not
  start), ``{"event": "sealed", "reason": ..., "packets": N, "bytes": N}`` (last line).

Sealing reasons: ``stopped``, ``max-bytes``, ``max-duration``, ``controller-gone``, ``disk-full``,
``error``. The file is written unbuffered, record by record, so it is a valid pcap at any moment.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import errno
import json
import logging
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

from esl_controller.capture.filters import (
    CaptureTarget,
    Deduper,
    FilterError,
    bpf_filter,
    keep_packet,
    parse_frame,
)

log = logging.getLogger("esl_controller.capture")

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
DLT_EN10MB = 1
PCAP_HEADER_BYTES = 24
PCAP_RECORD_HEADER_BYTES = 16
SNAPLEN = 65535
POLL_SECONDS = 0.2


class CaptureUnavailable(RuntimeError):
    """Capture cannot run here; ``str(exc)`` is the reason shown on the call."""


@dataclasses.dataclass(frozen=True)
class CaptureLimits:
    #: the file is sealed before it would grow past this many bytes
    max_bytes: int = 50 * 1024 * 1024
    #: the capture is sealed this many seconds after it started
    max_seconds: float = 4 * 3600.0


@dataclasses.dataclass(frozen=True)
class CaptureSummary:
    reason: str
    packets: int
    bytes: int


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def attach_bpf(sock: socket.socket, expression: str) -> None:
    """Compile ``expression`` with libpcap (through scapy) and attach it to the packet socket."""
    try:
        from scapy.arch.common import compile_filter, free_filter
    except ImportError as exc:  # scapy itself missing
        raise CaptureUnavailable(
            f"scapy is not installed (pip install 'esl-controller[pcap]'): {exc}"
        ) from exc
    try:
        program = compile_filter(expression, linktype=DLT_EN10MB)
    except ImportError as exc:
        raise CaptureUnavailable(f"libpcap is not available (install libpcap0.8): {exc}") from exc
    except Exception as exc:  # scapy raises Scapy_Exception for bad expressions
        raise CaptureUnavailable(f"capture filter rejected by libpcap: {exc}") from exc
    try:
        fprog = _SockFprog(program.bf_len, ctypes.cast(program.bf_insns, ctypes.c_void_p).value)
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
    finally:
        free_filter(program)


def open_packet_socket(ifname: str | None) -> socket.socket:
    """A raw AF_PACKET socket (not yet receiving when ``ifname`` is given: bind after the filter)."""
    proto = 0 if ifname else socket.htons(ETH_P_ALL)
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, proto)
    except PermissionError as exc:
        raise CaptureUnavailable(
            f"no privilege to capture packets (needs root or CAP_NET_RAW): {exc}"
        ) from exc
    except (OSError, AttributeError) as exc:
        raise CaptureUnavailable(f"packet sockets are not available here: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError as exc:
        log.debug("packet socket option not set: %s", exc)
    return sock


class Sniffer:
    """Captures one call into ``path`` until stopped or a limit is reached."""

    def __init__(
        self,
        path: str,
        target: CaptureTarget,
        limits: CaptureLimits = CaptureLimits(),  # noqa: B008 (frozen)
        interface: str = "",
    ) -> None:
        self.path = path
        self.target = target
        self.limits = limits
        self.interface_override = interface
        self.interface = ""
        self.filter = ""
        self.packets = 0
        self.bytes = 0
        self.sealed: CaptureSummary | None = None
        self._sock: socket.socket | None = None
        self._writer: Any = None
        self._deduper = Deduper()
        self._started = 0.0

    # -- setup -----------------------------------------------------------------------------------
    def open(self) -> None:
        """Choose the interface, open and filter the socket, create the file. Raises CaptureUnavailable."""
        from esl_controller.capture.iface import InterfaceError, choose_interface

        try:
            index, name = choose_interface(self.target.media_ip, self.interface_override)
        except (InterfaceError, OSError) as exc:
            raise CaptureUnavailable(f"capture interface: {exc}") from exc
        self.interface = name
        self.filter = bpf_filter(self.target)
        sock = open_packet_socket(name if index else None)
        try:
            attach_bpf(sock, self.filter)
            if index:
                sock.bind((name, ETH_P_ALL))
            else:
                self._drain(sock, keep=False)  # frames queued before the filter was attached
            sock.setblocking(False)
            self._writer = self._open_writer()
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._started = time.monotonic()

    def _open_writer(self) -> Any:
        try:
            from scapy.utils import RawPcapWriter
        except ImportError as exc:
            raise CaptureUnavailable(f"scapy is not installed: {exc}") from exc
        try:
            writer = RawPcapWriter(
                self.path, linktype=DLT_EN10MB, sync=True, nano=True, snaplen=SNAPLEN
            )
            writer.write_header(None)
        except OSError as exc:
            raise CaptureUnavailable(f"cannot write {self.path}: {exc}") from exc
        self.bytes = PCAP_HEADER_BYTES
        return writer

    def update(self, target: CaptureTarget) -> str:
        """Follow new media (re-INVITE): a new filter replaces the old one on the same socket."""
        expression = bpf_filter(target)
        if self._sock is not None:
            attach_bpf(self._sock, expression)
        self.target, self.filter = target, expression
        return expression

    # -- packets ---------------------------------------------------------------------------------
    def handle(self, frame: bytes, ifname: str, pkttype: int, ts: float) -> bool:
        """Decide about one captured frame and write it; True if written."""
        if ifname == "lo" and pkttype == socket.PACKET_OUTGOING:
            return False  # loopback delivers the same packet again as incoming
        if self._deduper.is_duplicate(frame, ts):
            return False
        dgram = parse_frame(frame)
        if dgram is None or not keep_packet(dgram, self.target):
            return False
        return self._write(frame, ts)

    def _write(self, frame: bytes, ts: float) -> bool:
        size = PCAP_RECORD_HEADER_BYTES + len(frame)
        if self.bytes + size > self.limits.max_bytes:
            self.seal("max-bytes")
            return False
        sec = int(ts)
        try:
            self._writer.write_packet(frame, sec=sec, usec=int(round((ts - sec) * 1e9)))
        except OSError as exc:
            self.seal("disk-full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "error")
            log.warning("capture %s stopped: %s", self.path, exc)
            return False
        self.packets += 1
        self.bytes += size
        return True

    def _recv(self, sock: socket.socket) -> tuple[bytes, str, int, float] | None:
        try:
            data, anc, _flags, addr = sock.recvmsg(SNAPLEN, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return None
        ts = time.time()
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(value) >= 16:
                sec, nsec = struct.unpack("qq", value[:16])
                ts = sec + nsec / 1e9
        return data, addr[0], addr[2], ts

    def _drain(self, sock: socket.socket, keep: bool) -> None:
        sock.setblocking(False)
        while self.sealed is None and sock.fileno() >= 0:
            got = self._recv(sock)
            if got is None:
                return
            if keep:
                self.handle(*got)

    def check_limits(self) -> None:
        if self.sealed is None and time.monotonic() - self._started >= self.limits.max_seconds:
            self.seal("max-duration")

    def seal(self, reason: str) -> CaptureSummary:
        """Close socket and file (idempotent: the first reason wins)."""
        if self.sealed is None:
            if reason in ("stopped", "controller-gone") and self._sock is not None:
                self._drain(
                    self._sock, keep=True
                )  # what the kernel already holds belongs to the call
                if self.sealed is not None:  # a limit was reached while draining
                    return self.sealed
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._writer is not None:
                try:
                    self._writer.close()
                except OSError as exc:
                    log.warning("closing %s: %s", self.path, exc)
            self.sealed = CaptureSummary(reason, self.packets, self.bytes)
        return self.sealed

    # -- child process main loop -----------------------------------------------------------------
    def run(self, commands: IO[bytes], events: IO[str]) -> CaptureSummary:
        """Serve commands from ``commands`` until stopped, the input ends or a limit is reached."""
        buf = b""
        fd = commands.fileno()
        while self.sealed is None:
            watch = [fd] + ([self._sock] if self._sock is not None else [])
            ready, _, _ = select.select(watch, [], [], POLL_SECONDS)
            if self._sock is not None and self._sock in ready:
                self._drain(self._sock, keep=True)
            if fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.seal("controller-gone")
                    break
                buf += chunk
                while b"\n" in buf and self.sealed is None:
                    line, buf = buf.split(b"\n", 1)
                    self._command(line, events)
            self.check_limits()
        assert self.sealed is not None
        return self.sealed

    def _command(self, line: bytes, events: IO[str]) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            _emit(events, event="warning", reason="bad command line")
            return
        op = msg.get("op") if isinstance(msg, dict) else None
        if op == "stop":
            self.seal("stopped")
        elif op == "update":
            try:
                expression = self.update(CaptureTarget.from_dict(msg.get("target") or {}))
            except (FilterError, CaptureUnavailable, OSError) as exc:
                _emit(events, event="rejected", reason=f"update rejected: {exc}")
                return
            _emit(events, event="updated", filter=expression)
        else:
            _emit(events, event="warning", reason=f"unknown command {op!r}")


def _emit(events: IO[str], **fields: object) -> None:
    events.write(json.dumps(fields, separators=(",", ":")) + "\n")
    events.flush()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m esl_controller.capture.sniffer", description=__doc__
    )
    p.add_argument("--path", required=True, help="pcap file to write")
    p.add_argument("--target", required=True, help="CaptureTarget as JSON")
    p.add_argument(
        "--interface", default="", help="capture on this interface (default: route lookup)"
    )
    p.add_argument("--netns", default="", help="enter this named network namespace first")
    p.add_argument("--max-bytes", type=int, default=CaptureLimits.max_bytes)
    p.add_argument("--max-seconds", type=float, default=CaptureLimits.max_seconds)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    events = sys.stdout
    try:
        if args.netns:
            from pyroute2 import netns

            try:
                netns.setns(args.netns, flags=0)
            except OSError as exc:
                raise CaptureUnavailable(
                    f"cannot enter network namespace {args.netns!r}: {exc}"
                ) from exc
        target = CaptureTarget.from_dict(json.loads(args.target))
        sniffer = Sniffer(
            args.path, target, CaptureLimits(args.max_bytes, args.max_seconds), args.interface
        )
        sniffer.open()
    except (CaptureUnavailable, FilterError, ValueError) as exc:
        _emit(events, event="error", reason=str(exc))
        return 2
    _emit(events, event="ready", interface=sniffer.interface, filter=sniffer.filter)
    try:
        summary = sniffer.run(sys.stdin.buffer, events)
    except Exception as exc:  # keep the file valid whatever happens
        log.exception("capture %s failed", args.path)
        summary = sniffer.seal("error")
        _emit(events, event="warning", reason=f"capture loop failed: {exc}")
    _emit(
        events, event="sealed", reason=summary.reason, packets=summary.packets, bytes=summary.bytes
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
