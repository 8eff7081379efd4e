"""The suite runner's sharing out of test files (tests/parallel.py)."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "parallel_runner", Path(__file__).resolve().parents[1] / "parallel.py"
)
parallel = importlib.util.module_from_spec(spec)
spec.loader.exec_module(parallel)


def weights(values):
    return {Path(f"tests/integration/test_{i}.py"): w for i, w in enumerate(values)}


def test_every_file_once_and_the_groups_about_even():
    w = weights([900, 500, 400, 300, 300, 200, 100, 100, 50, 10])
    groups = parallel.share_out(w, 2)
    assert sorted(p for g in groups for p in g) == sorted(w)
    loads = [sum(w[p] for p in g) for g in groups]
    assert abs(loads[0] - loads[1]) <= 900 // 4 and sum(loads) == 2860


def test_more_jobs_than_files_leaves_no_empty_group():
    groups = parallel.share_out(weights([10, 20]), 4)
    assert len(groups) == 2 and all(len(g) == 1 for g in groups)


def test_recorded_times_first_then_an_estimate_from_size():
    here = Path(__file__).resolve()
    key = here.relative_to(parallel.ROOT).as_posix()
    assert parallel.expected_time(here, {key: 42.0}) == 42.0
    estimate = parallel.expected_time(here, {})
    assert estimate == here.stat().st_size * parallel.SECONDS_PER_BYTE["unit"]


def test_file_seconds_sums_a_junit_report_per_file(tmp_path):
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.unit.test_parallel_runner" name="a" time="1.5"/>'
        '<testcase classname="tests.unit.test_parallel_runner" name="b" time="2.0"/>'
        '<testcase classname="tests.unit.test_parallel_runner.SomeClass" name="c" time="0.5"/>'
        '<testcase classname="nowhere.at_all" name="d" time="9"/>'
        "</testsuite></testsuites>"
    )
    assert parallel.file_seconds(str(report)) == {"tests/unit/test_parallel_runner.py": 4.0}


def test_the_suite_files_are_all_found():
    found = parallel.test_files()
    here = Path(__file__).resolve()
    assert here in found
    assert any(p.parent.name == "integration" for p in found)
    assert all(p.name.startswith("test_") and p.suffix == ".py" for p in found)
