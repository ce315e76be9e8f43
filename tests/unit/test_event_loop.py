"""MENTORFLOW_EVENT_LOOP: uvloop where it is installed, asyncio on request."""

from __future__ import annotations

import asyncio

import pytest

from service.platform import event_loop
from service.platform.settings import Settings, SettingsError


async def _loop_name() -> str:
    return event_loop.name()


@pytest.mark.parametrize(("choice", "expected"), [("asyncio", "asyncio"), ("uvloop", "uvloop")])
def test_each_choice_runs_on_its_loop(choice: str, expected: str) -> None:
    pytest.importorskip("uvloop")
    assert event_loop.run(_loop_name(), choice) == expected


def test_auto_is_uvloop_where_it_is_installed() -> None:
    expected = "uvloop" if event_loop.uvloop_installed() else "asyncio"
    assert event_loop.run(_loop_name(), "auto") == expected


@pytest.mark.parametrize("value", ["", "auto", "UVLOOP", " asyncio "])
def test_the_setting_accepts_its_values(value: str) -> None:
    settings = Settings.from_env({"MENTORFLOW_EVENT_LOOP": value})
    assert settings.event_loop == (value.strip().lower() or "auto")


def test_the_setting_refuses_anything_else() -> None:
    with pytest.raises(SettingsError, match="MENTORFLOW_EVENT_LOOP"):
        Settings.from_env({"MENTORFLOW_EVENT_LOOP": "trio"})


def test_uvloop_asked_for_but_missing_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_loop, "uvloop_installed", lambda: False)
    with pytest.raises(SettingsError, match="uvloop is not installed"):
        Settings.from_env({"MENTORFLOW_EVENT_LOOP": "uvloop"})
    assert Settings.from_env({"MENTORFLOW_EVENT_LOOP": "auto"}).event_loop == "auto"
    assert event_loop.loop_factory("auto") is None


def test_a_loop_runs_to_completion_and_closes() -> None:
    async def work() -> int:
        await asyncio.sleep(0)
        return 7

    assert event_loop.run(work(), "auto") == 7
