"""Settings: read once from AUDIOQ_* variables, strict where a typo would
otherwise be silent (a pure unit: no services)."""

from __future__ import annotations

import pytest

from shared import operations
from shared.settings import ConfigError, Settings

BASE = {"AUDIOQ_S3_ACCESS_KEY": "a", "AUDIOQ_S3_SECRET_KEY": "b"}


def test_costs_come_from_the_registry_unless_overridden():
    s = Settings.from_env({**BASE, "AUDIOQ_COST_KEY_BPM": "5", "AUDIOQ_COST_SEPARATE_4STEM": "0"})
    assert s.cost(operations.get("key-bpm"), {}) == 5
    assert s.cost(operations.get("bpm"), {}) == operations.get("bpm").cost == 1
    # The tasks dialect bills a separation as the v1 route with as many stems.
    tasks = operations.get("tasks/separate")
    assert s.cost(tasks, {"targets": "vocals=wav;drums=mp3"}) == 0  # 4 stems, overridden to 0
    assert s.cost(tasks, {"targets": "vocals=wav;instrumental=flac"}) == operations.get("separate/2stem").cost


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("AUDIOQ_COST_BMP", "3", "names no operation"),  # a typo of BPM
        ("AUDIOQ_COST_BPM", "-1", "zero or more"),
        ("AUDIOQ_COST_BPM", "two", "integer"),
        ("AUDIOQ_S3_SECURE", "ture", "true or false"),
    ],
)
def test_bad_settings_refuse_to_start(name, value, words):
    with pytest.raises(ConfigError, match=words):
        Settings.from_env({**BASE, name: value})


@pytest.mark.parametrize(("raw", "value"), [("on", True), ("OFF", False), ("yes", True), ("0", False)])
def test_booleans_accept_the_documented_spellings(raw, value):
    assert Settings.from_env({**BASE, "AUDIOQ_S3_SECURE": raw}).s3_secure is value


def test_s3_credentials_have_no_default():
    with pytest.raises(ConfigError, match="AUDIOQ_S3_ACCESS_KEY"):
        Settings.from_env({})
