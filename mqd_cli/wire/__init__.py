"""Alpaca's JSON and mqd's domain types, both ways.

* ``parse``: ``parse_order``, ``parse_trade_update``, ``parse_position``, ``parse_account``,
  ``parse_asset``, ``parse_clock``, ``parse_calendar_day``, ``parse_bar`` and the scalar
  readers (``dec``, ``ts``, ...); ``PayloadError`` names the missing or unusable field;
* ``format``: ``*_to_wire``, ``num``, ``stamp``, ``error_body``: exactly the shapes Alpaca
  sends (the emulator's side).
"""
