"""Verifiable history, pure: the RFC 9162 Merkle tree and C2SP signed checkpoints.

Nothing here does I/O, so the offline evidence verifier and the service share it.
"""
