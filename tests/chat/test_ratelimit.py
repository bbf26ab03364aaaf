"""Per-address limits and the trusted-proxy rule, on a fake clock."""

from __future__ import annotations

from course_ws.chat.ratelimit import AddressLimits, PerAddress, TokenBucket, client_address


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(2.0, 3, clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5
    assert bucket.take()
    assert not bucket.take()
    clock.now += 10
    assert bucket.full


def test_reconnecting_gains_no_messages():
    clock = FakeClock()
    limits = PerAddress(AddressLimits(message_rate=1.0, message_burst=5), clock)
    said = 0
    for _ in range(50):  # reconnect in a loop, saying as much as allowed each time
        assert limits.attempt("10.0.0.1") is None
        bucket = limits.opened("10.0.0.1")
        while bucket.take():
            said += 1
        limits.closed("10.0.0.1")
        clock.now += 0.01
    assert said <= 5 + 1  # the burst, plus what 0.5 s of refill allows


def test_other_addresses_have_their_own_buckets():
    limits = PerAddress(AddressLimits(message_rate=1.0, message_burst=1), FakeClock())
    assert limits.opened("a").take()
    assert not limits.opened("a").take()
    assert limits.opened("b").take()


def test_connection_attempts_are_limited_per_address():
    clock = FakeClock()
    limits = PerAddress(AddressLimits(connect_rate=1.0, connect_burst=3), clock)
    assert [limits.attempt("a") for _ in range(3)] == [None, None, None]
    reason = limits.attempt("a")
    assert reason is not None
    assert "too many connection attempts" in reason
    assert limits.attempt("b") is None
    clock.now += 1
    assert limits.attempt("a") is None


def test_open_connections_are_limited_per_address():
    limits = PerAddress(AddressLimits(max_connections=2, connect_burst=100), FakeClock())
    for _ in range(2):
        assert limits.attempt("a") is None
        limits.opened("a")
    reason = limits.attempt("a")
    assert reason is not None
    assert "too many connections" in reason
    limits.closed("a")
    assert limits.attempt("a") is None


def test_quiet_addresses_are_forgotten_and_the_table_stays_bounded():
    clock = FakeClock()
    limits = PerAddress(
        AddressLimits(connect_rate=10.0, connect_burst=10), clock, max_addresses=100
    )
    for number in range(1000):
        limits.attempt(f"10.0.{number // 256}.{number % 256}")
    assert len(limits) <= 101
    clock.now += 60  # every bucket refills
    limits.attempt("10.9.9.9")
    limits.attempt("10.9.9.8")
    assert len(limits) < 100


def test_an_address_with_open_connections_is_never_forgotten():
    clock = FakeClock()
    limits = PerAddress(AddressLimits(), clock, max_addresses=1)
    limits.attempt("held")
    limits.opened("held")
    clock.now += 60
    for number in range(10):
        limits.attempt(f"other-{number}")
    assert limits.opened("held").take()
    limits.closed("held")
    limits.closed("held")


def test_the_forwarded_address_is_read_only_from_a_trusted_proxy():
    trusted = {"127.0.0.1", "10.0.0.2"}
    assert client_address("203.0.113.9", "1.1.1.1", trusted) == "203.0.113.9"
    assert client_address("127.0.0.1", "198.51.100.7", trusted) == "198.51.100.7"
    # A client can put anything on the left; the rightmost untrusted hop is the client.
    assert client_address("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.0.0.2", trusted) == (
        "198.51.100.7"
    )
    assert client_address("127.0.0.1", None, trusted) == "127.0.0.1"
    assert client_address(None, None) == "unknown"
