"""Verifiable history on the store: the Merkle tree over the global log, signed
checkpoints, proofs and evidence bundles (the pure parts are in domain.verifiable)."""
