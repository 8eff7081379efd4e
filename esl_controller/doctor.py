"""``esl-controller doctor`` (``scripts/esl-doctor``): check that this box can run the controller.

Each check prints one line ``PASS|WARN|FAIL|SKIP  <name>  <detail>``; the exit status is 1 when any
check failed, else 0. Checks, each bounded by ``--timeout`` seconds:

* ``database``: reachable, answers ``SELECT 1``, no pending migrations (a missing SQLite file fails:
  the doctor never creates one).
* ``esl.connect``, ``esl.auth`` and the modules ``mod_event_socket``, ``mod_sofia``, ``mod_audio_fork``
  (``api module_exists``), when ``freeswitch.enabled``: TCP reachable, the event-socket ACL lets this host
  in (FreeSWITCH answers ``text/rude-rejection`` otherwise), the password is accepted.
* ``port.http``, ``port.outbound``, ``port.fork``: free, or held by this process or an
  ``esl-controller serve`` process (owners found through ``/proc``).
* ``capture``: CAP_NET_RAW (or root), libpcap, scapy and pyroute2 (a FAIL only when
  ``capture.enabled``; per-assistant captures would still need them, hence a WARN otherwise).
* ``disk``: free space in the data directory (WARN under ``--min-free-mb``), the directory writable.
* ``secret-key``: the key file is mode 0600 (or the key comes from the configuration).
"""

from __future__ import annotations

import argparse
import ctypes.util
import dataclasses
import errno
import importlib.util
import json
import logging
import os
import shutil
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse

from esl_controller.config import Settings

log = logging.getLogger("esl_controller.doctor")

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
CAP_NET_RAW = 13
#: modules the controller needs from FreeSWITCH
REQUIRED_MODULES = ("mod_event_socket", "mod_sofia", "mod_audio_fork")


@dataclasses.dataclass(frozen=True)
class CheckResult:
    name: str
    status: str
    detail: str


@dataclasses.dataclass(frozen=True)
class DoctorOptions:
    #: seconds each check may take
    timeout: float = 5.0
    #: warn when the data directory has less free space than this
    min_free_bytes: int = 1024 * 1024 * 1024


# ------------------------------------------------------------------------------- pure helpers


def listening_inodes(proc_net_tcp: str, port: int) -> set[int]:
    """Socket inodes listening on ``port`` in a ``/proc/net/tcp`` or ``tcp6`` table."""
    out: set[int] = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A":  # 0A = LISTEN
            continue
        _addr, _, hex_port = fields[1].rpartition(":")
        try:
            if int(hex_port, 16) == port:
                out.add(int(fields[9]))
        except ValueError:
            continue
    return out


def is_controller_cmdline(argv: Iterable[str]) -> bool:
    """True for ``esl-controller serve ...`` or ``python -m esl_controller serve ...``."""
    args = list(argv)
    for i, arg in enumerate(args):
        if os.path.basename(arg) == "esl-controller" or (
            arg == "-m" and i + 1 < len(args) and args[i + 1] == "esl_controller"
        ):
            return "serve" in args[i + 1 :]
    return False


def has_capability(proc_status: str, bit: int) -> bool | None:
    """Whether the effective capability set (``CapEff`` of ``/proc/<pid>/status``) holds ``bit``."""
    for line in proc_status.splitlines():
        if line.startswith("CapEff:"):
            try:
                return bool(int(line.split(":", 1)[1].strip(), 16) >> bit & 1)
            except ValueError:
                return None
    return None


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def format_line(result: CheckResult, width: int = 18) -> str:
    return f"{result.status}  {result.name:<{width}} {result.detail}"


# ------------------------------------------------------------------------------------- checks


def check_database(settings: Settings, opts: DoctorOptions) -> list[CheckResult]:
    from playhouse.migrations import Runner

    from esl_controller.db.connect import open_database
    from esl_controller.db.migrate import MIGRATIONS_DIR

    url = settings.database_url
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        raw = unquote(parsed.path)
        path = "/" + raw.lstrip("/") if url.startswith("sqlite:////") else raw.lstrip("/")
        if path != ":memory:" and not Path(path).is_file():
            return [CheckResult("database", FAIL, f"no database file {path}: run esl-controller migrate")]  # fmt: skip
        kind = "sqlite"
    else:
        kind = "postgresql"
        if "connect_timeout" not in parsed.query:
            sep = "&" if parsed.query else "?"
            url = f"{url}{sep}connect_timeout={max(1, int(opts.timeout))}"
    try:
        db = open_database(url, 1, 60, min(opts.timeout, settings.database.busy_timeout))
        db.connect(reuse_if_open=True)
    except Exception as exc:  # any driver error: not reachable
        return [CheckResult("database", FAIL, f"{kind} not reachable: {_one_line(exc)}")]
    try:
        db.execute_sql("SELECT 1").fetchone()
        status = Runner(db, str(MIGRATIONS_DIR)).status()
        pending = [m.name for m in status if not m.applied and m.path is not None]
    except Exception as exc:  # a query failed
        return [CheckResult("database", FAIL, f"{kind} query failed: {_one_line(exc)}")]
    finally:
        db.close()
    if pending:
        return [
            CheckResult(
                "database",
                FAIL,
                f"{kind} reachable; {len(pending)} pending migration(s) ({', '.join(pending)}):"
                " run esl-controller migrate",
            )
        ]
    return [CheckResult("database", PASS, f"{kind} reachable, {len(status)} migrations applied")]


def check_freeswitch(settings: Settings, opts: DoctorOptions) -> list[CheckResult]:
    fs = settings.freeswitch
    if not fs.enabled:
        return [CheckResult("esl", SKIP, "freeswitch.enabled is false")]
    from esl_controller.esl.errors import AuthenticationFailed, ESLError
    from esl_controller.esl.inbound import InboundConnection, InboundSettings

    where = f"{fs.host}:{fs.port}"
    try:
        socket.create_connection((fs.host, fs.port), timeout=opts.timeout).close()
    except OSError as exc:
        return [CheckResult("esl.connect", FAIL, f"cannot reach the event socket at {where}: {exc}")]  # fmt: skip
    out = [CheckResult("esl.connect", PASS, f"event socket at {where} reachable")]
    conn = InboundConnection(
        InboundSettings(
            host=fs.host,
            port=fs.port,
            password=fs.password,
            connect_timeout=opts.timeout,
            command_timeout=opts.timeout,
            events=(),
        )
    )
    try:
        try:
            conn.connect()
        except AuthenticationFailed as exc:
            if "rude-rejection" in str(exc):
                out.append(
                    CheckResult(
                        "esl.acl",
                        FAIL,
                        f"FreeSWITCH refused this host (event_socket.conf.xml apply-inbound-acl)"
                        f" at {where}",
                    )
                )
            else:
                out.append(CheckResult("esl.auth", FAIL, f"password refused by {where} (freeswitch.password)"))  # fmt: skip
            return out
        except (OSError, ESLError) as exc:
            out.append(CheckResult("esl.auth", FAIL, f"no session with {where}: {_one_line(exc)}"))
            return out
        out.append(CheckResult("esl.auth", PASS, "ACL lets this host in; password accepted"))
        for module in REQUIRED_MODULES:
            try:
                res = conn.api(f"module_exists {module}", timeout=opts.timeout)
            except ESLError as exc:
                out.append(CheckResult(module, FAIL, f"module_exists failed: {_one_line(exc)}"))
                continue
            answer = res.text.strip()
            if answer == "true":
                out.append(CheckResult(module, PASS, "loaded"))
            elif answer == "false":
                out.append(CheckResult(module, FAIL, "not loaded (modules.conf.xml, load " + module + ")"))  # fmt: skip
            else:
                out.append(CheckResult(module, FAIL, f"module_exists answered {answer[:80]!r}"))
    finally:
        conn.stop(timeout=opts.timeout)
    return out


def _socket_owners(port: int) -> tuple[list[tuple[int, list[str]]], bool]:
    """(pid, argv) of processes holding a socket listening on ``port``; and whether every process
    could be inspected."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            inodes |= listening_inodes(Path(table).read_text(), port)
        except OSError:
            continue
    if not inodes:
        return [], False
    wanted = {f"socket:[{i}]" for i in inodes}
    owners: list[tuple[int, list[str]]] = []
    complete = True
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            complete = False
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    cmd = (entry / "cmdline").read_bytes().split(b"\0")
                    owners.append((int(entry.name), [c.decode(errors="replace") for c in cmd if c]))
                    break
            except OSError:
                continue
    return owners, complete


def _check_port(name: str, host: str, port: int) -> CheckResult:
    if port == 0:
        return CheckResult(name, PASS, "port 0: an ephemeral port is chosen at start")
    where = f"{host}:{port}"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        return CheckResult(name, PASS, f"{where} free")
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            return CheckResult(name, FAIL, f"cannot listen on {where}: {exc.strerror or exc}")
    finally:
        sock.close()
    owners, complete = _socket_owners(port)
    for pid, argv in owners:
        if pid == os.getpid():
            return CheckResult(name, PASS, f"{where} in use by this process")
        if is_controller_cmdline(argv):
            return CheckResult(name, PASS, f"{where} in use by esl-controller (pid {pid})")
    if owners:
        pid, argv = owners[0]
        return CheckResult(name, FAIL, f"{where} in use by pid {pid} ({' '.join(argv)[:80]})")
    hint = "" if complete else " (run as root to see which process holds it)"
    return CheckResult(name, WARN, f"{where} in use by another process{hint}")


def check_ports(settings: Settings, opts: DoctorOptions) -> list[CheckResult]:
    fs = settings.freeswitch
    out = [_check_port("port.http", settings.http.host, settings.http.port)]
    if fs.enabled:
        out.append(_check_port("port.outbound", fs.outbound_host, fs.outbound_port))
        out.append(_check_port("port.fork", fs.fork_host, fs.fork_port))
    else:
        out.append(CheckResult("port.outbound", SKIP, "freeswitch.enabled is false"))
        out.append(CheckResult("port.fork", SKIP, "freeswitch.enabled is false"))
    return out


def check_capture(settings: Settings, opts: DoctorOptions) -> list[CheckResult]:
    missing: list[str] = []
    try:
        cap = has_capability(Path("/proc/self/status").read_text(), CAP_NET_RAW)
    except OSError:
        cap = None
    if cap is None:
        cap = os.geteuid() == 0
    if not cap:
        missing.append("CAP_NET_RAW (run as root or setcap cap_net_raw+ep on the Python binary)")
    if ctypes.util.find_library("pcap") is None:
        missing.append("libpcap (apt-get install libpcap0.8)")
    for module in ("scapy", "pyroute2"):
        if importlib.util.find_spec(module) is None:
            missing.append(f"{module} (pip install 'esl-controller[pcap]')")
    if not missing:
        return [CheckResult("capture", PASS, "CAP_NET_RAW, libpcap, scapy and pyroute2 present")]
    status = FAIL if settings.capture.enabled else WARN
    prefix = (
        "" if settings.capture.enabled else "capture.enabled is false; per-call captures need: "
    )
    return [CheckResult("capture", status, prefix + "missing " + "; ".join(missing))]


def check_disk(settings: Settings, opts: DoctorOptions) -> list[CheckResult]:
    data = settings.data_path
    if not data.is_dir():
        return [CheckResult("disk", FAIL, f"data directory {data} does not exist")]
    if not os.access(data, os.W_OK | os.X_OK):
        return [CheckResult("disk", FAIL, f"data directory {data} is not writable")]
    usage = shutil.disk_usage(data)
    detail = f"{format_bytes(usage.free)} free of {format_bytes(usage.total)} in {data}"
    if usage.free < opts.min_free_bytes:
        return [CheckResult("disk", WARN, f"{detail} (below {format_bytes(opts.min_free_bytes)})")]
    return [CheckResult("disk", PASS, detail)]


def check_secret_key(settings: Settings, opts: DoctorOptions) -> list[CheckResult]:
    if settings.secrets.key:
        return [CheckResult("secret-key", PASS, "secrets.key set in the configuration")]
    path = settings.secret_key_path
    try:
        st = path.stat()
    except FileNotFoundError:
        return [CheckResult("secret-key", WARN, f"{path} does not exist yet (created on first start)")]  # fmt: skip
    except OSError as exc:
        return [CheckResult("secret-key", FAIL, f"{path}: {exc.strerror or exc}")]
    mode = st.st_mode & 0o777
    if mode & 0o077:
        return [CheckResult("secret-key", FAIL, f"{path} is mode {mode:04o}; run chmod 600 {path}")]  # fmt: skip
    if st.st_uid != os.geteuid():
        return [CheckResult("secret-key", WARN, f"{path} is mode {mode:04o} but owned by uid {st.st_uid}")]  # fmt: skip
    return [CheckResult("secret-key", PASS, f"{path} mode {mode:04o}")]


Check = Callable[[Settings, DoctorOptions], list[CheckResult]]
CHECKS: tuple[tuple[str, Check], ...] = (
    ("database", check_database),
    ("esl", check_freeswitch),
    ("ports", check_ports),
    ("capture", check_capture),
    ("disk", check_disk),
    ("secret-key", check_secret_key),
)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def run_check(
    name: str, check: Check, settings: Settings, opts: DoctorOptions
) -> list[CheckResult]:
    """Run one check in a thread; a check that outlives its budget is reported as FAIL."""
    box: list[list[CheckResult]] = []

    def target() -> None:
        try:
            box.append(check(settings, opts))
        except Exception as exc:  # a bug in a check must not hide the other checks
            log.exception("doctor check %s crashed", name)
            box.append([CheckResult(name, FAIL, f"check crashed: {_one_line(exc)}")])

    # the check bounds its own waits; this guard catches whatever it could not
    budget = opts.timeout * (len(REQUIRED_MODULES) + 3) if name == "esl" else opts.timeout * 2
    thread = threading.Thread(target=target, name=f"doctor-{name}", daemon=True)
    thread.start()
    thread.join(budget + 1.0)
    if not box:
        return [CheckResult(name, FAIL, f"no answer within {budget + 1.0:.0f}s")]
    return box[0]


def run(settings: Settings, opts: DoctorOptions, only: Iterable[str] = ()) -> list[CheckResult]:
    wanted = set(only)
    results: list[CheckResult] = []
    for name, check in CHECKS:
        if wanted and name not in wanted:
            continue
        results.extend(run_check(name, check, settings, opts))
    return results


# --------------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds each check may take (default 5)"
    )
    parser.add_argument(
        "--min-free-mb",
        type=int,
        default=1024,
        help="warn when the data directory has less free space (MiB, default 1024)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[name for name, _ in CHECKS],
        help="run only this check (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def command(settings: Settings, args: argparse.Namespace) -> int:
    """``esl-controller doctor``: print the results; 1 if any check failed."""
    if not args.timeout > 0 or args.min_free_mb < 0:
        print("doctor: --timeout must be positive and --min-free-mb not negative", file=sys.stderr)
        return 2
    opts = DoctorOptions(timeout=args.timeout, min_free_bytes=args.min_free_mb * 1024 * 1024)
    results = run(settings, opts, args.only or ())
    failed = sum(r.status == FAIL for r in results)
    warned = sum(r.status == WARN for r in results)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    else:
        for r in results:
            print(format_line(r), flush=True)
        passed = sum(r.status == PASS for r in results)
        print(f"doctor: {passed} passed, {warned} warning(s), {failed} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """``scripts/esl-doctor``: the same as ``esl-controller doctor``."""
    from esl_controller.cli import tool_main

    return tool_main(("doctor",), argv, "esl-doctor")
