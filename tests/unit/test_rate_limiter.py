"""The per-key token bucket: the default rate and burst, a key's own rate (its burst scales
with it), and a request costing more than the burst, which is paid in full all the same."""

from serving.auth import RateLimiter


def test_the_default_burst_is_the_configured_one() -> None:
    limiter = RateLimiter(5.0, 20)
    assert limiter.wait_for("default", 11) == 0.0
    assert 0.39 < limiter.wait_for("default", 11) <= 0.4  # 9 tokens left, 5 a second


def test_a_request_past_the_burst_goes_from_a_full_bucket_and_is_paid_in_full() -> None:
    limiter = RateLimiter(5.0, 20)
    assert limiter.wait_for("default", 57) == 0.0  # 20 - 57: 37 in debt
    assert 7.5 < limiter.wait_for("default", 1) <= 7.6  # 38 tokens to come, 5 a second


def test_a_key_with_a_small_rate_of_its_own_still_pays_each_request_in_full() -> None:
    limiter = RateLimiter(100.0, 200)
    # rate 1 scales the burst to 2: a request of 13 goes from the full bucket, 11 in debt
    assert limiter.wait_for("slow", 13, rate=1.0) == 0.0
    assert 12.9 < limiter.wait_for("slow", 13, rate=1.0) <= 13.0  # until the bucket is full
