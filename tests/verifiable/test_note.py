"""Signed notes against golang.org/x/mod/sumdb/note's published example (the format's
reference implementation), and checkpoints that refuse to parse when malformed."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.verifiable import note

SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
SIGNED = (
    TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def _key() -> Ed25519PrivateKey:
    seed = base64.b64decode(SIGNER.split("+", 4)[4])
    assert seed[0] == 1
    return Ed25519PrivateKey.from_private_bytes(seed[1:])


def _public() -> bytes:
    blob = base64.b64decode(VERIFIER.split("+", 2)[2])
    assert blob[0] == 1
    return blob[1:]


def test_signing_reproduces_the_reference_note_byte_for_byte() -> None:
    assert note.sign(TEXT, "PeterNeumann", _key()) == SIGNED
    assert note.key_id("PeterNeumann", _public()).hex() == "c74f20a3"
    assert note.raw_public_key(_key().public_key()) == _public()


def test_the_reference_note_verifies_and_an_altered_one_does_not() -> None:
    assert note.verify(SIGNED, "PeterNeumann", _public()) == TEXT
    with pytest.raises(note.NoteError):
        note.verify(SIGNED.replace("cryptography", "cryptographY"), "PeterNeumann", _public())
    with pytest.raises(note.NoteError, match="no signature by"):
        note.verify(SIGNED, "PaulNeumann", _public())
    other = note.raw_public_key(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(note.NoteError):
        note.verify(SIGNED, "PeterNeumann", other)


def test_a_checkpoint_round_trips() -> None:
    root = bytes(range(32))
    text = note.checkpoint_text("example.org/log", 42, root)
    assert text == f"example.org/log\n42\n{base64.b64encode(root).decode()}\n"
    signed = note.sign(text, "example.org/log", _key())
    parsed = note.parse_checkpoint(note.verify(signed, "example.org/log", _public()))
    assert (parsed.origin, parsed.tree_size, parsed.root_hash) == ("example.org/log", 42, root)


@pytest.mark.parametrize(
    "text",
    [
        "o\n42\n",
        "o\n-1\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "o\n042\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "o\n42\n" + base64.b64encode(bytes(31)).decode() + "\n",
        "o\n42\nnot base64!\n",
        "o\n42\n" + base64.b64encode(bytes(32)).decode(),
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(note.NoteError):
        note.parse_checkpoint(text)


@pytest.mark.parametrize(
    "signed",
    ["no blank line\n", TEXT + "\n- PeterNeumann abc=\n", TEXT + "\n\u2014 PeterNeumann !!!\n"],
)
def test_malformed_notes_are_refused(signed: str) -> None:
    with pytest.raises(note.NoteError):
        note.split(signed)


def test_a_checkpoint_file_is_read_as_json_or_as_the_note() -> None:
    key = _key()
    signed = note.sign(note.checkpoint_text("o.example/log", 7, bytes(32)), "o.example/log", key)
    public = note.raw_public_key(key.public_key())
    as_json = json.dumps({"note": signed, "public_key": base64.b64encode(public).decode()})
    for content, key_expected in ((signed, None), (as_json, public)):
        read = note.read_checkpoint_file(content)
        assert read.note == signed and read.key_name == "o.example/log"
        assert read.checkpoint.tree_size == 7 and read.public_key == key_expected
    for bad in ("{}", '{"note": 3}', "{not json", "o\n7\n"):
        with pytest.raises(note.NoteError):
            note.read_checkpoint_file(bad)
