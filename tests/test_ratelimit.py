"""``KeyedLimiter`` and ``AuthLimits``: plain logic on a fake clock, and the settings."""

from __future__ import annotations

import pytest

from config import ConfigError, load_settings
from messenger.auth_limits import AuthLimits, address_key
from messenger.errors import TooManyAttempts
from messenger.ratelimit import KeyedLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(
    count: int = 3, window: float = 30.0, max_keys: int = 100
) -> tuple[KeyedLimiter, Clock]:
    clock = Clock()
    return KeyedLimiter(count, window, max_keys=max_keys, clock=clock), clock


def test_a_burst_of_count_then_one_per_window_over_count() -> None:
    limits, clock = limiter(count=3, window=30)
    assert [limits.take("a") for _ in range(3)] == [0, 0, 0]
    assert limits.take("a") == pytest.approx(10.0)  # one more every 30 / 3 s
    assert limits.take("b") == 0  # keys are independent
    clock.now += 4
    assert limits.check("a") == pytest.approx(6.0)
    clock.now += 6
    assert limits.take("a") == 0
    assert limits.take("a") == pytest.approx(10.0)


def test_a_refused_take_counts_nothing() -> None:
    limits, clock = limiter(count=1, window=10)
    assert limits.take("a") == 0
    for _ in range(100):
        assert limits.take("a") > 0
    clock.now += 10
    assert limits.take("a") == 0


def test_hit_counts_past_events_down_to_empty_but_not_below() -> None:
    limits, clock = limiter(count=2, window=20)
    for _ in range(10):
        limits.hit("a")
    assert limits.check("a") == pytest.approx(10.0)  # empty, not 8 events in debt
    clock.now += 10
    assert limits.check("a") == 0


def test_entries_expire_once_their_bucket_is_full_again() -> None:
    limits, clock = limiter(count=5, window=60)
    for key in ("a", "b", "c"):
        limits.take(key)
    assert len(limits) == 3
    clock.now += 59
    limits.check("x")
    assert len(limits) == 3
    clock.now += 1
    limits.check("x")
    assert len(limits) == 0
    limits.take("a")
    assert limits.check("a") == 0 and len(limits) == 1


def test_the_table_is_capped_against_a_spray_of_keys() -> None:
    limits, clock = limiter(count=1, window=3600, max_keys=1000)
    for number in range(100_000):
        limits.take(f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}")
        clock.now += 0.001
    assert len(limits) == 1000
    assert limits.evicted == 99_000
    assert limits.take("10.1.134.159") > 0  # among the most recent: still limited


def test_address_key_groups_ipv6_by_64_and_unmaps_ipv4() -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("not an address") == "not an address"


def auth_limits(**env: str) -> AuthLimits:
    return AuthLimits(load_settings(env))


def test_login_counts_attempts_per_address_and_only_failures_per_account() -> None:
    limits = auth_limits(AUTH_LIMIT_LOGIN_PER_IP="3/60",
                         AUTH_LIMIT_LOGIN_FAILURES_PER_ACCOUNT="2/60")
    for _ in range(3):
        limits.login("10.0.0.1", "ann@example.com")  # successes: nothing per account
    with pytest.raises(TooManyAttempts, match="address") as refused:
        limits.login("10.0.0.1", "ann@example.com")
    assert refused.value.retry_after == 20 and refused.value.code == "rate_limited"
    limits.login_failed("ann@example.com")
    limits.login_failed("ann@example.com")
    with pytest.raises(TooManyAttempts, match="account"):
        limits.login("10.0.0.2", "ann@example.com")
    limits.login("10.0.0.2", "bob@example.com")


def test_a_refusal_by_one_limit_takes_nothing_from_the_other() -> None:
    limits = auth_limits(AUTH_LIMIT_REGISTER_PER_IP="2/3600",
                         AUTH_LIMIT_REGISTER_PER_EMAIL="1/3600")
    limits.register("10.0.0.1", "a@example.com")
    with pytest.raises(TooManyAttempts, match="email"):
        limits.register("10.0.0.1", "a@example.com")
    limits.register("10.0.0.1", "b@example.com")  # the refusal above took no address slot
    with pytest.raises(TooManyAttempts, match="address"):
        limits.register("10.0.0.1", "c@example.com")
    limits.register("10.0.0.2", "c@example.com")  # nor an email slot


def test_each_endpoint_has_its_own_limits() -> None:
    limits = auth_limits(**{name: "1/60" for name in (
        "AUTH_LIMIT_REFRESH_PER_IP", "AUTH_LIMIT_RESEND_PER_IP", "AUTH_LIMIT_RESET_PER_IP",
        "AUTH_LIMIT_RESET_CONFIRM_PER_IP", "AUTH_LIMIT_LOGIN_PER_IP",
        "AUTH_LIMIT_REGISTER_PER_IP")})
    calls = [
        lambda: limits.refresh_from("10.0.0.1"),
        lambda: limits.resend("10.0.0.1", "u1"),
        lambda: limits.reset_request("10.0.0.1", "a@example.com"),
        lambda: limits.reset_confirm("10.0.0.1"),
        lambda: limits.login("10.0.0.1", "a@example.com"),
        lambda: limits.register("10.0.0.1", "a@example.com"),
    ]
    for call in calls:
        call()
    for call in calls:
        with pytest.raises(TooManyAttempts):
            call()


def test_default_limits() -> None:
    settings = load_settings({})
    assert settings.auth_limit_login_per_ip == (10, 60.0)
    assert settings.auth_limit_login_failures_per_account == (100, 3600.0)
    assert settings.auth_limit_table_size == 10_000


@pytest.mark.parametrize("value", ["ten", "10", "10/", "/60", "1.5/60", "10/x", "10 per 60"])
def test_a_limit_must_be_count_slash_seconds(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^AUTH_LIMIT_LOGIN_PER_IP: expected COUNT/SECONDS"):
        load_settings({"AUTH_LIMIT_LOGIN_PER_IP": value})


@pytest.mark.parametrize("value", ["0/60", "-1/60", "10/0", "10/nan", "10/inf", "10/604801"])
def test_a_limit_must_be_in_range(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^AUTH_LIMIT_REFRESH_PER_IP: COUNT must be"):
        load_settings({"AUTH_LIMIT_REFRESH_PER_IP": value})
