"""The keepalive rules of the hub's sweep, as a plain class (messenger/realtime/keepalive.py)."""

from __future__ import annotations

from messenger.realtime.keepalive import CLOSE_CODES, Action, Keepalive, KeepalivePolicy

POLICY = KeepalivePolicy(idle_timeout=120.0, ping_interval=20.0, ping_timeout=10.0)
FAR = 1e12  # a token that does not expire during the test


def test_a_session_is_pinged_every_interval_while_it_answers() -> None:
    k = Keepalive(0.0, POLICY)
    assert k.check(19.9, 0.0, FAR, POLICY) is Action.NONE
    assert k.check(20.0, 0.0, FAR, POLICY) is Action.PING
    assert k.check(21.0, 0.0, FAR, POLICY) is Action.NONE  # one ping at a time
    k.pong(22.0)
    assert k.check(39.9, 0.0, FAR, POLICY) is Action.NONE
    assert k.check(40.0, 0.0, FAR, POLICY) is Action.PING


def test_an_unanswered_ping_closes_after_the_timeout_even_if_other_frames_arrive() -> None:
    k = Keepalive(0.0, POLICY)
    assert k.check(20.0, 0.0, FAR, POLICY) is Action.PING
    k.heard(25.0)  # a message frame is not a pong
    assert k.check(30.0, 0.0, FAR, POLICY) is Action.NONE
    assert k.check(30.1, 0.0, FAR, POLICY) is Action.PING_TIMED_OUT
    assert CLOSE_CODES[Action.PING_TIMED_OUT] == 1001


def test_silence_past_the_idle_timeout_closes_with_1001() -> None:
    policy = KeepalivePolicy(idle_timeout=5.0, ping_interval=100.0, ping_timeout=100.0)
    k = Keepalive(0.0, policy)
    k.heard(3.0)
    assert k.check(8.0, 0.0, FAR, policy) is Action.NONE
    assert k.check(8.1, 0.0, FAR, policy) is Action.IDLE
    assert CLOSE_CODES[Action.IDLE] == 1001


def test_an_expired_token_closes_with_1008_before_anything_else() -> None:
    k = Keepalive(0.0, POLICY)
    assert k.check(1.0, 999.9, 1000.0, POLICY) is Action.NONE
    assert k.check(500.0, 1000.0, 1000.0, POLICY) is Action.TOKEN_EXPIRED
    assert CLOSE_CODES[Action.TOKEN_EXPIRED] == 1008


def test_the_sweep_runs_at_most_a_second_apart_and_as_often_as_the_shortest_rule() -> None:
    assert POLICY.period == 1.0
    assert KeepalivePolicy(1.5, 0.3, 1.0).period == 0.3
    assert KeepalivePolicy(2.0, 20.0, 20.0).period == 0.5
