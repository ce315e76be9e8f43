"""Webhook secrets at rest: sealed with the deployment's key when it has one."""

from __future__ import annotations

import pytest

from domain import create_cipher_key
from service.webhooks.sealing import PLAIN, SecretSealer, SecretUnavailable
from service.webhooks.signing import new_secret


def test_a_sealed_secret_opens_with_the_key_and_does_not_show_it() -> None:
    sealer, secret = SecretSealer(create_cipher_key()), new_secret()
    sealed = sealer.seal(secret)
    assert sealed.startswith("aes-gcm:") and secret.removeprefix("whsec_") not in sealed
    assert sealer.seal(secret) != sealed  # a fresh nonce each time
    assert sealer.open(sealed) == secret


def test_without_a_key_secrets_are_stored_as_given() -> None:
    secret = new_secret()
    assert PLAIN.seal(secret) == secret and PLAIN.open(secret) == secret


def test_secrets_stored_before_the_key_was_set_still_open() -> None:
    secret = new_secret()
    assert SecretSealer(create_cipher_key()).open(secret) == secret


@pytest.mark.parametrize("reader", [PLAIN, SecretSealer(create_cipher_key())])
def test_a_sealed_secret_never_opens_without_its_key(reader: SecretSealer) -> None:
    sealed = SecretSealer(create_cipher_key()).seal(new_secret())
    with pytest.raises(SecretUnavailable):
        reader.open(sealed)
