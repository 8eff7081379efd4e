"""Retry delays: exponential from the base, jittered within the upper half of each step, capped."""

import random

import pytest

from esl_controller.webhooks.queue import next_delay, verdict


class Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [
        (1, 1.0, 2.0),
        (2, 2.0, 4.0),
        (3, 4.0, 8.0),
        (5, 16.0, 32.0),
        (7, 30.0, 60.0),
        (60, 30.0, 60.0),
    ],
)
def test_delay_bounds_per_attempt(attempt, low, high):
    assert next_delay(attempt, 2.0, 60.0, Fixed(0.0)) == pytest.approx(low)
    assert next_delay(attempt, 2.0, 60.0, Fixed(0.999999)) == pytest.approx(high, rel=1e-5)


def test_delays_grow_until_the_ceiling_and_never_pass_it():
    rng = random.Random(42)
    delays = [next_delay(n, 0.5, 30.0, rng) for n in range(1, 40)]
    assert max(delays) <= 30.0
    assert min(delays[10:]) >= 15.0  # capped steps still wait at least half the ceiling
    assert delays[0] <= 0.5


def test_jitter_spreads_retries():
    rng = random.Random(7)
    values = {round(next_delay(4, 1.0, 600.0, rng), 6) for _ in range(50)}
    assert len(values) > 40
    assert all(4.0 <= v <= 8.0 for v in values)


def test_huge_attempt_numbers_do_not_overflow():
    assert next_delay(10_000, 1.0, 5.0, Fixed(0.5)) == pytest.approx(3.75)


@pytest.mark.parametrize("bad", [(0, 1.0, 1.0), (1, 0.0, 1.0), (1, 1.0, -1.0)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        next_delay(*bad, random.Random(0))


@pytest.mark.parametrize(
    ("status", "kwargs", "expected"),
    [
        (200, {}, "delivered"),
        (204, {}, "delivered"),
        (410, {}, "skipped"),
        (None, {"skip": True}, "skipped"),
        (500, {}, "retry"),
        (404, {}, "retry"),
        (None, {}, "retry"),
        (None, {"permanent": True}, "failed"),
        (302, {}, "retry"),
    ],
)
def test_verdicts(status, kwargs, expected):
    assert verdict(status, **kwargs) == expected
