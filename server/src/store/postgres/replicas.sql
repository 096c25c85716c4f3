-- Migration 2 (PostgreSQL only): the identification limits' counts, shared by every server
-- replica (with SQLite one process keeps them in memory). Neither is part of the ledger:
-- `migrate-store` does not carry them, and losing them only forgives recent attempts.

-- A token bucket (`kiosk:ID`, `merchant:NAME`): its level at `at_ms` (Unix milliseconds).
CREATE TABLE rate_buckets (
    name TEXT PRIMARY KEY,
    level DOUBLE PRECISION NOT NULL,
    at_ms BIGINT NOT NULL
);

-- A kiosk's failed identifications and when the last one happened (Unix milliseconds).
CREATE TABLE kiosk_failures (
    kiosk_id TEXT PRIMARY KEY,
    failures INTEGER NOT NULL CHECK (failures >= 0),
    last_ms BIGINT NOT NULL
);
