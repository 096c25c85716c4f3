-- Migration 5: cashiers (issue 12). A cashier is a person who handles the cash at one
-- merchant's kiosks, created by the operator; the PIN is an argon2id hash. Deposits and
-- withdrawals record the cashier who handled the cash (older rows keep NULL).
CREATE TABLE cashiers (
    id           INTEGER PRIMARY KEY,
    merchant_id  INTEGER NOT NULL REFERENCES accounts(id),
    name         TEXT NOT NULL,
    pin_hash     TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    -- Wrong PINs in a row and the lock they led to (one lock for every kiosk), counted
    -- BEFORE a PIN is checked; and the wrong PINs and locks of the UTC day `guess_day`.
    failures     INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_until INTEGER,
    guess_day    TEXT,
    guesses      INTEGER NOT NULL DEFAULT 0 CHECK (guesses >= 0),
    locks        INTEGER NOT NULL DEFAULT 0 CHECK (locks >= 0),
    created_at   TEXT NOT NULL,
    UNIQUE (merchant_id, name)
);

-- Open cashier sessions (only the token's SHA-256), bound to the kiosk that opened them.
CREATE TABLE cashier_sessions (
    token_hash BLOB PRIMARY KEY,
    cashier_id INTEGER NOT NULL REFERENCES cashiers(id),
    kiosk_id   TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX cashier_sessions_expiry ON cashier_sessions(expires_at);

ALTER TABLE transactions ADD COLUMN cashier_id INTEGER REFERENCES cashiers(id);
CREATE INDEX transactions_cashier ON transactions(cashier_id) WHERE cashier_id IS NOT NULL;
