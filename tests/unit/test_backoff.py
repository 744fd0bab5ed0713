"""Failures told and retried with backoff (warden/backoff.py): one line when a failure
begins, a summary at most once a minute, one when it ends; a flap soon after is summarised;
the pause doubles up to its last and starts over. Times are plain numbers: no clock."""

from __future__ import annotations

from warden.backoff import SUMMARY_EVERY, Backoff, Outage, Throttle


def test_a_throttle_lets_the_first_line_through_then_one_a_minute():
    throttle = Throttle()
    assert throttle.ready(1000.0)
    assert not throttle.ready(1000.0 + SUMMARY_EVERY - 0.5)
    assert throttle.ready(1000.0 + SUMMARY_EVERY)           # (at most once a minute: >=)
    assert not throttle.ready(1000.0 + SUMMARY_EVERY + 1.0)
    assert Throttle(every=5.0).ready(-1e9)                   # the first, whatever the clock


def test_an_outage_is_told_once_summarised_each_minute_and_its_end_told():
    outage = Outage()
    assert outage.since is None and outage.ended(5.0) is None   # nothing failing: nothing said
    assert outage.began(100.0) and outage.since == 100.0
    said = [outage.still(100.0 + second) for second in range(1, 60)]
    assert said == [None] * 59                                  # a line a try would flood
    assert outage.still(165.0) == 65.0                          # the seconds it summarises
    assert outage.still(170.0) is None
    assert outage.still(225.0) == 60.0
    assert outage.ended(230.0) == 130.0 and outage.since is None
    assert outage.ended(231.0) is None                          # told once


def test_a_flap_soon_after_the_last_line_is_summarised_not_told():
    outage = Outage()
    assert outage.began(0.0)
    assert outage.ended(1.0) == 1.0
    assert not outage.began(2.0)                  # a minute has not passed since the end line
    assert outage.ended(3.0) is None              # never told: its end is not told either
    assert not outage.began(30.0)
    assert outage.still(61.0) == 60.0             # then summarised, from the last line on
    assert outage.ended(62.0) == 32.0             # ... and so its end is told
    assert outage.began(122.0)                    # a minute after that: told afresh


def test_every_start_told_when_asked_and_the_summary_counts_from_it():
    outage = Outage(tell_every_start=True)
    assert outage.began(0.0) and outage.ended(1.0) == 1.0
    assert outage.began(2.0)                      # told, however soon
    assert outage.still(61.0) is None             # a minute from that line, not the first
    assert outage.still(62.0) == 60.0
    assert outage.ended(63.0) == 61.0


def test_a_shorter_summary_interval_is_kept():
    outage = Outage(every=5.0)
    assert outage.began(0.0) and outage.still(4.0) is None and outage.still(5.0) == 5.0


def test_the_pause_doubles_up_to_its_last_and_starts_over():
    backoff = Backoff(0.5, 30.0)
    assert backoff.delay == 0.5
    assert [backoff.longer() for _ in range(8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff.delay == 30.0
    assert backoff.reset() == 0.5 and backoff.delay == 0.5


def test_a_first_pause_beyond_the_last_is_brought_down_to_it():
    backoff = Backoff(100.0, 30.0)                # (the quarantine's refresh may exceed it)
    assert backoff.delay == 100.0 and backoff.longer() == 30.0 and backoff.longer() == 30.0
