-- The table as the single-machine version of Shunter created it (the acceptance
-- guide's era): no 'cancelled' status yet. Kept so that a database created back then
-- is brought up to date by 0002 like any other.
CREATE TABLE IF NOT EXISTS local_training_jobs (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    status text NOT NULL,
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    completed_at timestamptz,
    CONSTRAINT local_training_jobs_status_check
        CHECK (status IN ('queued', 'running', 'completed', 'failed'))
);
