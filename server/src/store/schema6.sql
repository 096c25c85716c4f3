-- Migration 6: drop accounts.failed_auth and locked_until. Unused since migration 3 (one
-- shared counter for password and PIN, replaced by per-factor counts in auth_kiosk /
-- auth_day); PostgreSQL never had them. Neither column is in an index, a constraint or a
-- view, which SQLite's DROP COLUMN requires.
ALTER TABLE accounts DROP COLUMN failed_auth;
ALTER TABLE accounts DROP COLUMN locked_until;
