"""Configuration: the settings schema, its field primitives, and TOML loading.

* ``settings``: ``Settings`` and one frozen dataclass per TOML table (``AlpacaSettings``,
  ``StoreSettings``, ``ThrottleSettings``, ``RiskSettings``, ``ProtectionsSettings``, ...);
* ``fields``: ``Secret``, ``setting()``, ``table()``: what the schema is declared with;
* ``loading``: ``load`` / ``loads`` (discovery, strict validation into one ``ConfigError``),
  ``store_path``, ``redact``, ``render_commented`` (``mqd config init``), ``iter_fields``.

Durations are read by ``mqd_cli.durations``, shared with the rest of the system.
"""
