"""The domain: the ledger, recording, reconciliation, provenance, the lookup. No Flask here (tests/test_architecture.py checks)."""
