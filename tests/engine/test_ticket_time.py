"""Ticket times as SimpleOne gives them (UTC) and as people read them."""

from __future__ import annotations

from engine.ticket_time import known_zone, local_time, parse_updated_at


def test_a_ticket_time_is_read_as_utc() -> None:
    assert parse_updated_at("2026-12-02 00:19:05") == 1_796_170_745.0
    assert parse_updated_at("вчера") is None


def test_a_ticket_time_is_shown_as_people_read_it_in_their_zone() -> None:
    assert local_time("2026-12-02 00:19:05", "Europe/Moscow") == "02.12.2026, 03:19"
    assert local_time("2026-12-31 22:30:00", "Asia/Vladivostok") == "01.01.2027, 08:30"
    assert local_time("не дата", "Europe/Moscow") == "не дата"


def test_only_known_zones_are_accepted() -> None:
    assert known_zone("Europe/Moscow") and not known_zone("Europe/Nowhere") and not known_zone("../etc")
