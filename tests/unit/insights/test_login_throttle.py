"""The console's login throttle: 5 failures per name or address in 5 minutes, then a wait."""

from __future__ import annotations

from services.insights.console.auth import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(throttle: LoginThrottle, name: str, address: str | None, times: int = 1) -> None:
    for _ in range(times):
        assert throttle.retry_after(name, address) is None
        throttle.attempt(name, address)


def test_five_failures_of_a_name_make_it_wait_until_the_first_is_five_minutes_old() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    fail(throttle, "admin", "10.0.0.1", 4)
    clock.now += 60
    fail(throttle, "admin", "10.0.0.2")  # the fifth, from another address
    assert throttle.retry_after("admin", "10.0.0.3") == 240
    clock.now += 239.5
    assert throttle.retry_after("admin", "10.0.0.3") == 1  # never 0: the header says wait
    clock.now += 0.5
    assert throttle.retry_after("admin", "10.0.0.3") is None  # the first four aged out
    fail(throttle, "admin", "10.0.0.3", 4)
    assert throttle.retry_after("admin", "10.0.0.3") == 60  # the fifth is still recent


def test_five_failures_from_an_address_block_every_name_from_it() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for name in ("a", "b", "c", "d", "e"):
        fail(throttle, name, "203.0.113.9")
    assert throttle.retry_after("f", "203.0.113.9") == 300
    assert throttle.retry_after("f", "203.0.113.10") is None


def test_refused_attempts_do_not_count_and_a_success_takes_its_attempt_back() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    fail(throttle, "alice", "10.0.0.1", 4)
    token = throttle.attempt("alice", "10.0.0.1")
    throttle.succeeded("alice", "10.0.0.1", token)
    assert throttle.retry_after("alice", "10.0.0.1") is None
    fail(throttle, "alice", "10.0.0.2", 4)  # the name starts again from zero
    # The address keeps its four earlier failures: one more blocks it.
    fail(throttle, "bob", "10.0.0.1")
    assert throttle.retry_after("carol", "10.0.0.1") == 300


def test_an_attempt_counts_before_its_password_is_checked() -> None:
    """Concurrent sign-ins all pass retry_after before any check ends: the sixth is refused."""
    throttle = LoginThrottle(clock=Clock())
    for _ in range(5):
        assert throttle.retry_after("admin", "10.0.0.1") is None
        throttle.attempt("admin", "10.0.0.1")  # password checks still running
    assert throttle.retry_after("admin", "10.0.0.1") == 300


def test_memory_is_bounded_by_forgetting_the_stalest() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_keys=10, clock=clock)
    fail(throttle, "admin", None, 5)
    for i in range(9):
        clock.now += 1
        throttle.attempt(f"made-up-{i}", None)
    assert throttle.retry_after("admin", None) == 291
    clock.now += 1
    throttle.attempt("made-up-9", None)
    assert throttle.retry_after("admin", None) is None
    assert len(throttle._failures) == 10
