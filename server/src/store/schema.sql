-- Migration 1: the ledger.
-- Balances are integer minor units. Every transaction has entries that sum to zero; the
-- cached balance of an account is the sum of its entries (checked by ledger-check).
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('shopper', 'merchant', 'till')),
    name          TEXT NOT NULL,
    email         TEXT,
    password_hash TEXT,
    pin_hash      TEXT,
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen')),
    currency      TEXT NOT NULL,
    balance       INTEGER NOT NULL DEFAULT 0,
    merchant_id   INTEGER REFERENCES accounts(id),
    failed_auth   INTEGER NOT NULL DEFAULT 0,
    locked_until  INTEGER,
    created_at    TEXT NOT NULL,
    -- A shopper can never go below zero, whatever the code above does.
    CHECK (kind <> 'shopper' OR balance >= 0),
    CHECK (kind <> 'shopper' OR password_hash IS NOT NULL),
    CHECK (kind <> 'till' OR merchant_id IS NOT NULL),
    UNIQUE (kind, name)
);

CREATE TABLE transactions (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('deposit', 'withdrawal', 'payment', 'transfer', 'refund')),
    amount      INTEGER NOT NULL CHECK (amount > 0),
    currency    TEXT NOT NULL,
    -- The shopper concerned (payer, or credited shopper for deposits and refunds).
    shopper_id  INTEGER NOT NULL REFERENCES accounts(id),
    -- The other party as shown to people: merchant, or the transfer's recipient.
    other_id    INTEGER NOT NULL REFERENCES accounts(id),
    merchant_id INTEGER REFERENCES accounts(id),
    kiosk_id    TEXT,
    ref_tx_id   INTEGER REFERENCES transactions(id),
    description TEXT,
    created_by  TEXT,
    created_at  TEXT NOT NULL,
    CHECK (kind <> 'refund' OR ref_tx_id IS NOT NULL)
);
CREATE INDEX transactions_merchant_day ON transactions(merchant_id, created_at);
CREATE INDEX transactions_day ON transactions(created_at);
CREATE INDEX transactions_ref ON transactions(ref_tx_id) WHERE ref_tx_id IS NOT NULL;

CREATE TABLE entries (
    id            INTEGER PRIMARY KEY,
    tx_id         INTEGER NOT NULL REFERENCES transactions(id),
    account_id    INTEGER NOT NULL REFERENCES accounts(id),
    amount        INTEGER NOT NULL CHECK (amount <> 0),
    balance_after INTEGER NOT NULL
);
CREATE INDEX entries_account ON entries(account_id, id);
CREATE INDEX entries_tx ON entries(tx_id);

CREATE TABLE idempotency (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    result       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    kiosk_id   TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_expiry ON sessions(expires_at);

CREATE TABLE kiosks (
    kiosk_id    TEXT PRIMARY KEY,
    merchant_id INTEGER NOT NULL REFERENCES accounts(id),
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    requests    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE palm_scans (
    id         INTEGER PRIMARY KEY,
    kiosk_id   TEXT NOT NULL,
    at         TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    score      REAL,
    account_id INTEGER REFERENCES accounts(id)
);
