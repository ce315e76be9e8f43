"""The checkpoint signing key: created once (mode 0600, atomically, whoever
starts first), read from MENTORFLOW_SIGNING_KEY, refused when unusable."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from service.platform.settings import Settings, SettingsError
from service.verifiable.signing_key import DEFAULT_FILE, SigningKeyError, load_signing_key

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    key = load_signing_key(settings)
    path = tmp_path / "data" / DEFAULT_FILE
    assert key.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_signing_key(settings).public_key == key.public_key
    assert len(key.public_key) == 32
    assert key.public_pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert [p.name for p in path.parent.iterdir()] == [DEFAULT_FILE]  # no temporary left


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path;"
        "from service.platform.settings import Settings;"
        "from service.verifiable.signing_key import load_signing_key;"
        "print(load_signing_key(Settings(data_dir=Path(sys.argv[1]))).public_key_b64)"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "shared")],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        for _ in range(6)
    ]
    keys = {p.communicate(timeout=60)[0].strip() for p in processes}
    assert all(p.returncode == 0 for p in processes)
    assert len(keys) == 1


def test_a_configured_key_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(SigningKeyError, match=r"nowhere\.pem"):
        load_signing_key(Settings(data_dir=tmp_path, signing_key_path=missing))
    assert not missing.exists()


def test_a_configured_key_is_used(tmp_path: Path) -> None:
    created = load_signing_key(Settings(data_dir=tmp_path / "a"))
    used = load_signing_key(Settings(data_dir=tmp_path / "b", signing_key_path=created.path))
    assert used.public_key == created.public_key
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("content", ["garbage", "ec"])
def test_an_unusable_key_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "key.pem"
    if content == "ec":
        path.write_bytes(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            )
        )
    else:
        path.write_text("not a key")
    with pytest.raises(SigningKeyError, match=r"key\.pem"):
        load_signing_key(Settings(data_dir=tmp_path, signing_key_path=path))


def test_checkpoint_settings() -> None:
    settings = Settings.from_env(
        {
            "MENTORFLOW_SIGNING_KEY": "/keys/log.pem",
            "MENTORFLOW_LOG_ORIGIN": "example.org/mentoring",
            "MENTORFLOW_CHECKPOINT_INTERVAL": "5",
        }
    )
    assert settings.signing_key_path == Path("/keys/log.pem")
    assert settings.log_origin == "example.org/mentoring"
    assert settings.checkpoint_interval_s == 5.0
    defaults = Settings.from_env({})
    assert defaults.signing_key_path is None and defaults.log_origin is None
    assert defaults.checkpoint_interval_s == 60.0
    for bad in ("with space", "a+b", "x" * 201, "caf\u00e9"):
        with pytest.raises(SettingsError, match="MENTORFLOW_LOG_ORIGIN"):
            Settings.from_env({"MENTORFLOW_LOG_ORIGIN": bad})
    with pytest.raises(SettingsError, match="MENTORFLOW_CHECKPOINT_INTERVAL"):
        Settings.from_env({"MENTORFLOW_CHECKPOINT_INTERVAL": "0"})
