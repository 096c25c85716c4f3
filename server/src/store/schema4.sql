-- Migration 4: palm versions and retention.

-- The version of each shopper's palm: every enrollment and deletion takes the next number
-- of one sequence (the largest here plus one). The in-memory identification index applies
-- a change only if it is newer than what it has seen of that palm, so a replayed deletion
-- cannot remove a palm enrolled since, nor a replayed enrollment bring a deleted one back.
CREATE TABLE palm_versions (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id),
    version    INTEGER NOT NULL CHECK (version > 0)
);
CREATE INDEX palm_versions_version ON palm_versions(version);

-- Retention purges by age, a batch at a time.
CREATE INDEX idempotency_created ON idempotency(created_at);
CREATE INDEX palm_scans_at ON palm_scans(at);
