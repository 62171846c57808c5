""".env.example documents every setting, and each value it shows is one Settings accepts."""

from __future__ import annotations

import re
from pathlib import Path

from userapi.core.config import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", re.MULTILINE)


def test_every_setting_is_documented() -> None:
    documented = {name for name, _ in _LINE.findall(ENV_EXAMPLE.read_text())}
    missing = {name.upper() for name in Settings.model_fields} - documented
    assert not missing, f".env.example does not mention {sorted(missing)}"


def test_the_uncommented_values_make_valid_settings() -> None:
    values = {
        name.lower(): value.strip()
        for name, value in re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE)
        if name.lower() in Settings.model_fields
    }
    assert "mail_delivery" in values
    settings = Settings(_env_file=None, **values)  # type: ignore[arg-type]
    assert settings.mail_max_attempts >= 1
