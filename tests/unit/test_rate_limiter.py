"""The per-key token bucket: the default rate and burst, and a key's own rate, whose burst
scales with it but always holds the most one request can cost."""

from serving.auth import RateLimiter


def test_a_key_with_a_small_rate_of_its_own_still_pays_each_request_in_full() -> None:
    limiter = RateLimiter(100.0, 200, least_burst=29)
    # rate 1 would scale the burst to 2; it holds 29, so two requests of 13 fit, not three
    assert limiter.wait_for("slow", 13, rate=1.0) == 0.0
    assert limiter.wait_for("slow", 13, rate=1.0) == 0.0
    assert 9.9 < limiter.wait_for("slow", 13, rate=1.0) <= 10.0  # 3 tokens left, 1 a second


def test_the_default_burst_is_the_configured_one() -> None:
    limiter = RateLimiter(5.0, 20, least_burst=29)
    assert limiter.wait_for("default", 11) == 0.0
    assert 0.39 < limiter.wait_for("default", 11) <= 0.4  # 9 tokens left, 5 a second
