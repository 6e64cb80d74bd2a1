"""Storage adapters (Redis)."""
