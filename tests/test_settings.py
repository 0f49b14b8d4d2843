"""Settings: one table drives defaults, sources, validation, masking and the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import SETTINGS, Settings, SettingsError, mask

README = Path(__file__).resolve().parents[1] / "README.md"


def test_table_and_dataclass_defaults_agree() -> None:
    defaults = Settings()
    for setting in SETTINGS:
        assert getattr(defaults, setting.attr) == setting.default, setting.env


def test_env_beats_toml_beats_default(tmp_path: Path) -> None:
    toml = tmp_path / "pixhook.toml"
    toml.write_text('max_in_flight = 3\nwebhook_grace = 10\n')
    settings = Settings.load({"PIXHOOK_MAX_IN_FLIGHT": "7"}, toml_path=toml)
    assert settings.max_in_flight == 7 and settings.sources["max_in_flight"] == "env"
    assert settings.webhook_grace == 10.0 and settings.sources["webhook_grace"] == "toml"
    assert settings.poll_mode == "fallback" and settings.sources["poll_mode"] == "default"


@pytest.mark.parametrize(("name", "value"), [("PIXHOOK_POLL_MODE", "sometimes"),
                                             ("PIXHOOK_MAX_IN_FLIGHT", "-1"),
                                             ("PIXHOOK_WEBHOOK_GRACE", "soon")])
def test_bad_values_name_the_variable(name: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.load({name: value}, toml_path=tmp_path / "absent.toml")


def test_unknown_toml_key_is_an_error(tmp_path: Path) -> None:
    toml = tmp_path / "pixhook.toml"
    toml.write_text("max_inflight = 3\n")
    with pytest.raises(SettingsError, match="max_inflight"):
        Settings.load({}, toml_path=toml)


def test_secrets_never_show(tmp_path: Path) -> None:
    secret = "sk-live-0123456789abcdef"
    settings = Settings.load({"PIXVERSE_API_KEY": secret, "PIXHOOK_API_TOKEN": secret},
                             toml_path=tmp_path / "absent.toml")
    assert secret not in repr(settings)
    described = str(settings.describe())
    assert secret not in described and mask(secret) in described


def test_readme_lists_every_setting() -> None:
    text = README.read_text()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in text, setting.env
