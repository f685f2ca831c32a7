"""Settings follow the environment as it is now, though each distinct environment's object is built only once."""

from __future__ import annotations

import pydantic
import pytest

from settings import get_settings


def test_a_changed_variable_takes_effect_at_once_and_a_removed_one_falls_back(monkeypatch):
    monkeypatch.delenv("WORKBENCH_MAX_ENGINES", raising=False)
    assert get_settings().max_engines == 2
    monkeypatch.setenv("WORKBENCH_MAX_ENGINES", "5")
    assert get_settings().max_engines == 5
    # names are case-insensitive, as pydantic-settings reads them
    monkeypatch.setenv("workbench_max_engines", "6")
    monkeypatch.delenv("WORKBENCH_MAX_ENGINES")
    assert get_settings().max_engines == 6
    monkeypatch.delenv("workbench_max_engines")
    assert get_settings().max_engines == 2
    assert get_settings() is get_settings()  # the same environment: one object, built once


def test_the_shared_object_cannot_be_changed():
    with pytest.raises(pydantic.ValidationError):
        get_settings().max_engines = 9
