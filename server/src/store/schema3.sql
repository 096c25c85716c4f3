-- Migration 3: guess budgets and lock-outs per factor, and spending without the PIN.
-- (accounts.failed_auth / locked_until of migration 1 are no longer used: one shared counter
-- let a password login forgive PIN guesses, and one lock at any kiosk locked every kiosk.)

-- Consecutive failures of one factor of one shopper at one kiosk, and that kiosk's lock.
-- A guess is counted here BEFORE its hash is checked; a success clears only its own row.
CREATE TABLE auth_kiosk (
    account_id   INTEGER NOT NULL REFERENCES accounts(id),
    factor       TEXT NOT NULL CHECK (factor IN ('password', 'pin', 'step_up')),
    kiosk_id     TEXT NOT NULL,
    failures     INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_until INTEGER,
    PRIMARY KEY (account_id, factor, kiosk_id)
) WITHOUT ROWID;

-- Wrong guesses at one secret (password or PIN) of one shopper on one UTC day, at every
-- kiosk together: the account-wide cap, and the count of kiosk locks (for the back-off).
CREATE TABLE auth_day (
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    secret     TEXT NOT NULL CHECK (secret IN ('password', 'pin')),
    day        TEXT NOT NULL,
    guesses    INTEGER NOT NULL DEFAULT 0 CHECK (guesses >= 0),
    locks      INTEGER NOT NULL DEFAULT 0 CHECK (locks >= 0),
    PRIMARY KEY (account_id, secret, day)
) WITHOUT ROWID;

-- Debits made without the PIN (by session or by palm), for the cumulative limits.
CREATE TABLE no_pin_debits (
    tx_id        INTEGER PRIMARY KEY REFERENCES transactions(id),
    account_id   INTEGER NOT NULL REFERENCES accounts(id),
    session_hash BLOB,
    amount       INTEGER NOT NULL CHECK (amount > 0),
    created_at   TEXT NOT NULL
);
CREATE INDEX no_pin_debits_day ON no_pin_debits(account_id, created_at);
CREATE INDEX no_pin_debits_session ON no_pin_debits(session_hash) WHERE session_hash IS NOT NULL;
