"""Tamper-evident audit trail: canonical events, hash chain, RFC 9162 Merkle tree, signed checkpoints, exports.

The modules here are pure (no database, no HTTP): the trail storage and queries wire them to the audit table.
"""
