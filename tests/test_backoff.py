from bot.backoff import retry_delay


def test_backoff_grows_and_is_capped() -> None:
    low = [retry_delay(a, base=1, cap=60, rand=lambda: 0.0) for a in range(10)]
    high = [retry_delay(a, base=1, cap=60, rand=lambda: 1.0) for a in range(10)]
    assert low[:4] == [0.5, 1.0, 2.0, 4.0]
    assert high[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(high) == 60 and max(low) == 30


def test_retry_after_is_a_floor() -> None:
    assert retry_delay(0, base=1, cap=60, retry_after=42, rand=lambda: 0.5) == 42
    assert retry_delay(5, base=1, cap=60, retry_after=0.1, rand=lambda: 1.0) == 32


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert retry_delay(10_000, base=1, cap=300, rand=lambda: 1.0) == 300
