"""Run the whole suite as a few pytest processes side by side (what ``make test`` does).

Most of the suite waits: on audio paced in real time, on worker processes, on sockets and the databases, so one
pytest process keeps about half of one core busy. Two processes over disjoint halves of the test files take about
half the wall time. (pytest-xdist cannot be used: its workers wait on threading events that gevent's monkey
patching, which the tests need, turns into greenlet events its own threads cannot wake.)

    python tests/parallel.py [--jobs N] [pytest options]

The test files are shared out by expected time, longest first, each to the group with the least so far. A file's
expected time is what ``tests/durations.json`` says it took (written by ``--record`` from the groups' JUnit
reports), or for a file not in it an estimate from its size. Every group's
output goes to a file of its own and is printed when the group ends: in full when it failed, its summary line
when it passed. The exit status is the first failing group's (0 when every group passed). With test paths among
the arguments, or ``--jobs 1``, it is plain pytest. Every process runs the same tests it would alone: each has its
own temporary directories, ephemeral ports and PostgreSQL schema.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
#: the longest the whole suite may take before the groups are stopped
TIMEOUT_SECONDS = 40 * 60
DURATIONS = TESTS / "durations.json"
#: seconds per byte of a test file not in DURATIONS (unit test files run about ten times faster per byte)
SECONDS_PER_BYTE = {"unit": 0.0001}
SECONDS_PER_BYTE_OTHER = 0.001


def expected_time(path: Path, recorded: dict[str, float]) -> float:
    """Seconds the file is expected to take: as recorded, or estimated from its size."""
    key = path.relative_to(ROOT).as_posix() if path.is_absolute() else path.as_posix()
    if key in recorded:
        return float(recorded[key])
    return path.stat().st_size * SECONDS_PER_BYTE.get(path.parent.name, SECONDS_PER_BYTE_OTHER)


def file_seconds(junit_xml: str) -> dict[str, float]:
    """Seconds per test file (relative path) from a JUnit report; a test's classname is its module's dotted
    path, with the class name after it for tests in a class."""
    out: dict[str, float] = defaultdict(float)
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        parts = (case.get("classname") or "").split(".")
        while parts and not (ROOT / ("/".join(parts) + ".py")).is_file():
            parts.pop()
        if parts:
            out["/".join(parts) + ".py"] += float(case.get("time") or 0.0)
    return dict(out)


def load_recorded() -> dict[str, float]:
    try:
        data = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def share_out(weights: dict[Path, float], jobs: int) -> list[list[Path]]:
    """The files in ``jobs`` groups of about the same total weight (heaviest first, to the lightest group)."""
    groups: list[list[Path]] = [[] for _ in range(jobs)]
    loads = [0.0] * jobs
    for f in sorted(weights, key=lambda p: (-weights[p], str(p))):
        i = loads.index(min(loads))
        groups[i].append(f)
        loads[i] += weights[f]
    return [sorted(g) for g in groups if g]


def test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "__pycache__" not in p.parts)


def run_groups(
    groups: list[list[Path]], pytest_args: list[str], timeout: float, record: bool = False
) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="esl-tests-") as tmp:
        procs = []
        for n, group in enumerate(groups, 1):
            log = open(os.path.join(tmp, f"group-{n}.log"), "w+b")  # noqa: SIM115 - closed below
            cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args]
            if record:
                cmd.append(f"--junitxml={os.path.join(tmp, f'group-{n}.xml')}")
            cmd += [str(p.relative_to(ROOT)) for p in group]
            procs.append((n, log, subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)))
        print(f"{len(groups)} pytest processes over {sum(map(len, groups))} test files", flush=True)
        status = 0
        for n, log, proc in procs:
            left = max(1.0, timeout - (time.monotonic() - started))
            try:
                code = proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait(timeout=30)
                log.write(f"\ngroup {n}: stopped after {timeout:.0f} s\n".encode())
            log.seek(0)
            text = log.read().decode(errors="replace")
            log.close()
            lines = text.rstrip().splitlines()
            if code == 0:
                print(f"group {n}: {lines[-1] if lines else 'no output'}", flush=True)
            else:
                print(f"===== group {n} failed (exit {code}) =====\n{text}", flush=True)
                status = status or code
        print(f"all groups done in {time.monotonic() - started:.0f} s", flush=True)
        if record and status == 0:
            seconds: dict[str, float] = {}
            for n in range(1, len(groups) + 1):
                seconds.update(file_seconds(os.path.join(tmp, f"group-{n}.xml")))
            DURATIONS.write_text(
                json.dumps({k: round(v, 1) for k, v in sorted(seconds.items())}, indent=0) + "\n"
            )
            print(f"recorded {len(seconds)} files' times in {DURATIONS.relative_to(ROOT)}")
        return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jobs",
        type=int,
        default=int(os.environ.get("ESL_TEST_JOBS", "0")) or min(2, os.cpu_count() or 1),
        help="pytest processes (default: 2, or ESL_TEST_JOBS)",
    )
    parser.add_argument(
        "--record", action="store_true", help=f"write each file's time to {DURATIONS.name}"
    )
    args, pytest_args = parser.parse_known_args(argv)
    paths = [a for a in pytest_args if not a.startswith("-") and (ROOT / a.split("::")[0]).exists()]
    if args.jobs <= 1 or paths:
        return subprocess.call([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT)
    recorded = load_recorded()
    weights = {p: expected_time(p, recorded) for p in test_files()}
    return run_groups(share_out(weights, args.jobs), pytest_args, TIMEOUT_SECONDS, args.record)


if __name__ == "__main__":
    sys.exit(main())
