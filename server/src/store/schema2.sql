-- Migration 2: enrolled palms. Templates are AEAD ciphertext (XChaCha20-Poly1305, key
-- outside the database), bound to (account, capture index) as associated data.
CREATE TABLE palm_templates (
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    idx        INTEGER NOT NULL CHECK (idx >= 0 AND idx < 8),
    ciphertext BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (account_id, idx)
) WITHOUT ROWID;
