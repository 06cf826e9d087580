"""The circuit breaker's state machine (bot/breaker.py), with the time passed in."""

from __future__ import annotations

import pytest

from bot.breaker import BreakerPolicy, BreakerState, CircuitBreaker

CLOSED, HALF_OPEN, OPEN = BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN


def breaker(rand: float = 0.0, **policy: float) -> CircuitBreaker:
    return CircuitBreaker(BreakerPolicy(**policy), rand=lambda: rand)  # type: ignore[arg-type]


def run(b: CircuitBreaker, steps: list[tuple[float, str]]) -> list[tuple[BreakerState, bool | None]]:
    """Apply (time, event) steps; each gives the state after it and, for acquire, its answer."""
    seen: list[tuple[BreakerState, bool | None]] = []
    for now, event in steps:
        answer: bool | None = None
        if event == "acquire":
            answer = b.acquire(now)
        elif event == "ok":
            b.success(now)
        elif event == "fail":
            b.failure(now)
        elif event.startswith("fail retry-after "):
            b.failure(now, retry_after=float(event.rsplit(" ", 1)[1]))
        elif event == "release":
            b.release()
        b.delay(now)  # lets time move open → half-open
        seen.append((b.state, answer))
    return seen


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # Two failures in a row stay closed; a success in between resets the count.
        (
            [(0, "fail"), (0.1, "fail"), (0.2, "ok"), (0.3, "fail"), (0.4, "fail"), (0.5, "acquire")],
            [(CLOSED, None)] * 5 + [(CLOSED, True)],
        ),
        # The third failure in a row opens: no call until retry_at (1 s: the minimum open time).
        (
            [(0, "fail"), (0, "fail"), (0, "fail"), (0.5, "acquire"), (0.99, "acquire")],
            [(CLOSED, None), (CLOSED, None), (OPEN, None), (OPEN, False), (OPEN, False)],
        ),
        # After retry_at: half-open, exactly one probe; its success closes.
        (
            [
                (0, "fail"),
                (0, "fail"),
                (0, "fail"),
                (1.0, "acquire"),
                (1.1, "acquire"),
                (1.2, "ok"),
                (1.2, "acquire"),
            ],
            [
                (CLOSED, None),
                (CLOSED, None),
                (OPEN, None),
                (HALF_OPEN, True),
                (HALF_OPEN, False),
                (CLOSED, None),
                (CLOSED, True),
            ],
        ),
        # A failed probe opens again; a cancelled probe lets the next caller probe.
        (
            [
                (0, "fail"),
                (0, "fail"),
                (0, "fail"),
                (1.0, "acquire"),
                (1.0, "release"),
                (1.0, "acquire"),
                (1.1, "fail"),
            ],
            [
                (CLOSED, None),
                (CLOSED, None),
                (OPEN, None),
                (HALF_OPEN, True),
                (HALF_OPEN, None),
                (HALF_OPEN, True),
                (OPEN, None),
            ],
        ),
        # One failure with a Retry-After opens at once, for at least that long.
        (
            [(0, "fail retry-after 5"), (4.9, "acquire"), (5.0, "acquire")],
            [(OPEN, None), (OPEN, False), (HALF_OPEN, True)],
        ),
        # A late failure of a call sent before the breaker opened only lengthens a Retry-After.
        (
            [
                (0, "fail retry-after 2"),
                (0.5, "fail"),
                (1.9, "acquire"),
                (1.95, "fail retry-after 3"),
                (4.9, "acquire"),
                (4.95, "acquire"),
            ],
            [(OPEN, None), (OPEN, None), (OPEN, False), (OPEN, None), (OPEN, False), (HALF_OPEN, True)],
        ),
    ],
)
def test_transitions(
    steps: list[tuple[float, str]], expected: list[tuple[BreakerState, bool | None]]
) -> None:
    assert run(breaker(), steps) == expected


def test_failed_probes_open_for_one_to_two_seconds_so_probes_are_about_one_a_second() -> None:
    for rand in (0.0, 0.5, 1.0):
        b = breaker(rand)
        for _ in range(3):
            b.failure(0.0)
        now = 0.0
        waits = []
        for _ in range(20):  # a long outage: every probe fails
            now = b.retry_at
            assert b.acquire(now)
            b.failure(now)
            waits.append(b.retry_at - now)
        assert all(1.0 <= w <= 2.0 for w in waits), waits


def test_retry_after_is_a_floor_and_capped() -> None:
    b = breaker(max_retry_after_seconds=60)
    b.failure(100.0, retry_after=30)
    assert b.retry_at == 130.0
    b2 = breaker(max_retry_after_seconds=60)
    b2.failure(100.0, retry_after=10_000)
    assert b2.retry_at == 160.0
    # A failed probe keeps a new Retry-After as a floor over the short backoff.
    b.acquire(130.0)
    b.failure(130.0, retry_after=7)
    assert b.retry_at == 137.0


def test_success_while_open_closes() -> None:
    """A call sent just before the breaker opened that succeeds proves Mattermost is up."""
    b = breaker()
    for _ in range(3):
        b.failure(0.0)
    assert b.state is OPEN
    b.success(0.5)
    assert b.state is CLOSED and b.acquire(0.5)


def test_success_while_open_keeps_the_quiet_the_server_asked_for() -> None:
    """A Retry-After (or another replica's opening) is kept to its end: the success may be an
    answer given before the server asked for quiet."""
    b = breaker()
    b.failure(0.0, retry_after=30)
    assert b.success(1.0) is None
    assert b.state is OPEN and not b.acquire(1.0)
    assert b.acquire(30.0) and b.state is HALF_OPEN
    assert b.success(30.1) is CLOSED

    held = breaker()
    held.hold(5.0, now=1.0)
    assert held.success(2.0) is None and held.state is OPEN
    # A Retry-After reaching an opening of our own is kept too.
    c = breaker()
    for _ in range(3):
        c.failure(0.0)
    c.failure(0.1, retry_after=10)
    assert c.success(0.2) is None and c.retry_at == 10.1


def test_hold_follows_another_replica() -> None:
    b = breaker()
    assert b.hold(5.0, now=1.0) is OPEN
    assert not b.acquire(4.9)
    assert b.delay(2.0) == 3.0
    assert b.hold(4.0, now=2.0) is None  # an older opening changes nothing
    assert b.hold(0.5, now=2.0) is None  # nor one that has passed
    assert b.acquire(5.0) and b.state is HALF_OPEN
    assert not b.acquire(5.0)  # one probe at a time
    b.success(5.1)
    assert b.state is CLOSED


def test_delay_says_how_long_to_wait() -> None:
    b = breaker()
    assert b.delay(0.0) == 0.0
    for _ in range(3):
        b.failure(10.0)
    assert b.delay(10.25) == pytest.approx(0.75)
    assert b.acquire(11.0)
    # The probe is under way: others wait about the minimum open time, then look again.
    assert b.delay(11.0) == 1.0
