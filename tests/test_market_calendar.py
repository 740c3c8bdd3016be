from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqd_cli import market_calendar as mc

NY = mc.EXCHANGE_TZ


def test_2026_full_holidays_match_the_nyse_calendar():
    assert sorted(mc.holidays(2026)) == [
        date(2026, 1, 1),
        date(2026, 1, 19),  # MLK
        date(2026, 2, 16),  # Washington's Birthday
        date(2026, 4, 3),  # Good Friday
        date(2026, 5, 25),  # Memorial Day
        date(2026, 6, 19),  # Juneteenth
        date(2026, 7, 3),  # Independence Day on a Saturday -> Friday
        date(2026, 9, 7),  # Labor Day
        date(2026, 11, 26),  # Thanksgiving
        date(2026, 12, 25),
    ]


def test_2026_early_closes_are_day_after_thanksgiving_and_christmas_eve():
    # July 3 2026 is the observed Independence Day (closed), so no July 3 early close.
    assert mc.early_closes(2026) == {
        date(2026, 11, 27): "day after Thanksgiving",
        date(2026, 12, 24): "Christmas Eve",
    }


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 4, 3),
        date(2026, 6, 19),
        date(2026, 11, 26),
        date(2026, 12, 25),
        date(2026, 1, 3),
        date(2026, 1, 4),
    ],  # Good Friday, Juneteenth, Thanksgiving, Xmas, Sat, Sun
)
def test_holidays_and_weekends_are_not_trading_days(day):
    assert not mc.is_trading_day(day)


def test_easter_dates_are_right_for_known_years():
    assert mc.easter_sunday(2024) == date(2024, 3, 31)
    assert mc.easter_sunday(2025) == date(2025, 4, 20)
    assert mc.easter_sunday(2026) == date(2026, 4, 5)
    assert mc.easter_sunday(2038) == date(2038, 4, 25)


def test_observed_rules_saturday_friday_sunday_monday_and_new_year_saturday_not_observed():
    # Juneteenth 2022 on a Sunday -> Monday June 20; 2027 on a Saturday -> Friday June 18.
    assert date(2022, 6, 20) in mc.holidays(2022)
    assert date(2027, 6, 18) in mc.holidays(2027)
    # Christmas 2022 on a Sunday -> Monday Dec 26.
    assert date(2022, 12, 26) in mc.holidays(2022)
    # New Year's Day 2022 fell on a Saturday: Friday Dec 31 2021 was a normal trading day.
    assert mc.is_trading_day(date(2021, 12, 31))
    assert date(2022, 1, 1) not in mc.holidays(2022)
    # Juneteenth did not exist before 2022.
    assert mc.is_trading_day(date(2021, 6, 18))


def test_july_3_early_close_only_when_it_is_a_trading_day_before_the_holiday():
    assert date(2025, 7, 3) in mc.early_closes(2025)  # Thursday
    assert date(2024, 7, 3) in mc.early_closes(2024)  # Wednesday
    assert date(2021, 7, 3) not in mc.early_closes(2021)  # Saturday


def test_special_closure_carter_day_of_mourning_is_closed():
    assert not mc.is_trading_day(date(2025, 1, 9))


def test_next_trading_day_skips_good_friday_and_the_weekend():
    assert mc.next_trading_day(date(2026, 4, 2)) == date(2026, 4, 6)
    assert mc.previous_trading_day(date(2026, 4, 6)) == date(2026, 4, 2)


def test_next_trading_day_skips_thanksgiving():
    assert mc.next_trading_day(date(2026, 11, 25)) == date(2026, 11, 27)


def test_session_times_in_new_york_including_early_close_and_dst():
    open_, close = mc.session_open_close(date(2026, 11, 27))
    assert (open_.time(), close.time()) == (time(9, 30), time(13, 0))
    assert open_.tzinfo == NY
    assert close.astimezone(UTC) == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)  # EST
    open_, close = mc.session_open_close(date(2026, 7, 1))
    assert open_.astimezone(UTC) == datetime(2026, 7, 1, 13, 30, tzinfo=UTC)  # EDT
    assert close.astimezone(UTC) == datetime(2026, 7, 1, 20, 0, tzinfo=UTC)


def test_session_of_a_holiday_raises_not_a_trading_day_with_its_name():
    with pytest.raises(mc.NotATradingDay, match="Good Friday"):
        mc.session_open_close(date(2026, 4, 3))


def test_is_open_next_open_and_next_close():
    friday_noon = datetime(2026, 4, 2, 12, 0, tzinfo=NY)  # Thursday before Good Friday
    assert mc.is_open(friday_noon)
    assert mc.next_close(friday_noon) == datetime(2026, 4, 2, 16, 0, tzinfo=NY)
    assert mc.next_open(friday_noon) == datetime(2026, 4, 6, 9, 30, tzinfo=NY)
    assert not mc.is_open(datetime(2026, 4, 2, 16, 0, tzinfo=NY))  # close is exclusive
    assert mc.next_open(datetime(2026, 4, 6, 8, 0, tzinfo=NY)) == datetime(
        2026, 4, 6, 9, 30, tzinfo=NY
    )


def test_trading_days_in_a_range_and_a_2026_count():
    assert mc.trading_days(date(2026, 4, 1), date(2026, 4, 7)) == [
        date(2026, 4, 1),
        date(2026, 4, 2),
        date(2026, 4, 6),
        date(2026, 4, 7),
    ]
    assert len(mc.trading_days(date(2026, 1, 1), date(2026, 12, 31))) == 251


def test_naive_datetimes_and_datetimes_as_dates_are_refused():
    with pytest.raises(ValueError, match="naive"):
        mc.is_open(datetime(2026, 4, 2, 12, 0))
    with pytest.raises(TypeError):
        mc.is_trading_day(datetime(2026, 4, 2, 12, 0, tzinfo=UTC))


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)))
def test_next_trading_day_is_a_later_weekday_within_five_days(day):
    nxt = mc.next_trading_day(day)
    assert day < nxt <= day + timedelta(days=6)
    assert nxt.weekday() < 5
    assert all(not mc.is_trading_day(day + timedelta(days=i)) for i in range(1, (nxt - day).days))


@given(st.integers(min_value=2000, max_value=2100))
def test_every_year_has_eight_to_ten_rule_holidays_all_on_weekdays(year):
    days = mc.holidays(year)
    assert all(d.weekday() < 5 for d in days)
    rule_days = [d for d in days if d not in mc.SPECIAL_CLOSURES]
    # 8 before Juneteenth or when New Year's Day falls on a Saturday, 10 at most.
    assert 8 <= len(rule_days) <= 10
