"""Settings read once from the environment, so every entry point agrees on them.

The variable names are part of the public contract (docs/api.md, "Running").
"""

from __future__ import annotations

import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from domain.risk import RiskPolicy
from service.platform import event_loop

DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
AES_KEY_SIZES = (16, 24, 32)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class SettingsError(ValueError):
    """A setting has a value the service cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    data_dir: Path = Path(".mentorflow")
    db_schema: str = "mentorflow"
    admin_token: str | None = field(default=None, repr=False)
    cipher_key: str | None = field(default=None, repr=False)
    compress: bool = False
    webhook_allow_private: bool = False
    webhook_retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    webhook_timeout_s: float = 10.0
    run_workers: bool = True
    risk_worker: bool = True
    """Whether this process's workers include the risk worker."""
    risk_interval_s: float = 60.0
    """How often the risk worker evaluates the at-risk rules (also on new events)."""
    risk_policy: RiskPolicy = field(default_factory=RiskPolicy)
    """The thresholds of the at-risk rules (``MENTORFLOW_RISK_*`` days)."""
    log_format: str = "auto"
    """`text`, `json`, or `auto`: text on a terminal, JSON lines otherwise."""
    signing_key_path: Path | None = None
    """MENTORFLOW_SIGNING_KEY; None: `<data dir>/signing-key.pem` (created on first start)."""
    log_origin: str | None = None
    """MENTORFLOW_LOG_ORIGIN; None: `mentorflow.local/<the database's log id>`."""
    checkpoint_interval_s: float = 60.0
    event_loop: str = "auto"
    """MENTORFLOW_EVENT_LOOP: `uvloop`, `asyncio`, or `auto` (uvloop where it is installed)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        schema = env.get("MENTORFLOW_DB_SCHEMA", "mentorflow")
        if not _SCHEMA_NAME.match(schema):
            raise SettingsError(
                "MENTORFLOW_DB_SCHEMA must be a lower-case SQL identifier "
                f"(letters, digits, underscore), got {schema!r}"
            )
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            data_dir=Path(env.get("MENTORFLOW_DATA_DIR", ".mentorflow")),
            db_schema=schema,
            admin_token=env.get("MENTORFLOW_ADMIN_TOKEN") or None,
            cipher_key=_cipher_key(env.get("MENTORFLOW_CIPHER_KEY") or None),
            compress=_flag(env, "MENTORFLOW_COMPRESS"),
            webhook_allow_private=_flag(env, "MENTORFLOW_WEBHOOK_ALLOW_PRIVATE"),
            webhook_retry_schedule=_schedule(env.get("MENTORFLOW_WEBHOOK_RETRY_SCHEDULE")),
            webhook_timeout_s=_seconds(env, "MENTORFLOW_WEBHOOK_TIMEOUT", 10.0),
            run_workers=_flag(env, "MENTORFLOW_RUN_WORKERS", default=True),
            log_format=_choice(env, "MENTORFLOW_LOG_FORMAT", ("auto", "text", "json")),
            signing_key_path=Path(env["MENTORFLOW_SIGNING_KEY"])
            if env.get("MENTORFLOW_SIGNING_KEY")
            else None,
            log_origin=_origin(env.get("MENTORFLOW_LOG_ORIGIN") or None),
            checkpoint_interval_s=_seconds(env, "MENTORFLOW_CHECKPOINT_INTERVAL", 60.0),
            risk_worker=_flag(env, "MENTORFLOW_RISK_WORKER", default=True),
            risk_interval_s=_seconds(env, "MENTORFLOW_RISK_INTERVAL", 60.0),
            risk_policy=_risk_policy(env),
            event_loop=_event_loop(env),
        )


_ORIGIN = re.compile(r"^[\x21-\x7e]{1,200}$")


def _origin(origin: str | None) -> str | None:
    """The checkpoint origin is also the signing key's name: printable ASCII,
    no space and no '+' (C2SP signed-note key names)."""
    if origin is not None and (not _ORIGIN.match(origin) or "+" in origin):
        raise SettingsError(
            "MENTORFLOW_LOG_ORIGIN must be 1-200 printable ASCII characters without"
            f" spaces or '+' (for example example.org/mentorflow), got {origin!r}"
        )
    return origin


def _cipher_key(key: str | None) -> str | None:
    """A bad key must stop the process before it starts or migrates a
    database, not on the first event it encrypts."""
    if key is None:
        return None
    try:
        raw = binascii.a2b_base64(key.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise SettingsError("MENTORFLOW_CIPHER_KEY must be base64") from exc
    if len(raw) not in AES_KEY_SIZES:
        raise SettingsError(
            f"MENTORFLOW_CIPHER_KEY must decode to 16, 24 or 32 bytes, got {len(raw)}"
        )
    return key


def _event_loop(env: Mapping[str, str]) -> str:
    choice = _choice(env, "MENTORFLOW_EVENT_LOOP", ("auto", "uvloop", "asyncio"))
    if choice == "uvloop" and not event_loop.uvloop_installed():
        raise SettingsError("MENTORFLOW_EVENT_LOOP=uvloop, but uvloop is not installed")
    return choice


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or choices[0]
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _flag(env: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    value = env.get(name, "").strip().lower()
    if value == "":
        return default
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name} must be 1 or 0, got {value!r}")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive")
    return value


def _schedule(raw: str | None) -> tuple[float, ...]:
    if not raw:
        return DEFAULT_RETRY_SCHEDULE
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError as exc:
        raise SettingsError(
            f"MENTORFLOW_WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds, got {raw!r}"
        ) from exc
    if not delays or any(d < 0 for d in delays):
        raise SettingsError("MENTORFLOW_WEBHOOK_RETRY_SCHEDULE needs non-negative delays")
    return delays


RISK_DAYS = {
    "MENTORFLOW_RISK_FIRST_MEETING_DAYS": "first_meeting_within",
    "MENTORFLOW_RISK_PAUSE_DAYS": "pause_limit",
    "MENTORFLOW_RISK_RESUME_GRACE_DAYS": "resume_grace",
}
"""Thresholds of the at-risk rules, in days (docs/operations.md)."""
STALL_DAYS = {
    "MENTORFLOW_RISK_STALL_IDENTIFICATION_DAYS": "identification",
    "MENTORFLOW_RISK_STALL_ESTABLISHMENT_DAYS": "establishment",
}
"""How long a phase may last before it counts as stalled, in days."""


def _days(env: Mapping[str, str], name: str) -> timedelta | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of days, got {raw!r}") from None
    if not 0 <= value <= 36_500:
        raise SettingsError(f"{name} must be between 0 and 36500 days")
    return timedelta(days=value)


def _risk_policy(env: Mapping[str, str]) -> RiskPolicy:
    default = RiskPolicy()
    changes: dict[str, object] = {}
    for name, attribute in RISK_DAYS.items():
        if (days := _days(env, name)) is not None:
            changes[attribute] = days
    stall = dict(default.stall_limits)
    for name, phase in STALL_DAYS.items():
        if (days := _days(env, name)) is not None:
            stall[phase] = days
    return RiskPolicy(
        cadence_periods=default.cadence_periods,
        cadence_grace=default.cadence_grace,
        stall_limits=stall,
        **changes,  # type: ignore[arg-type]
    )
