-- Scheduling: suspended and stopping jobs, the reason of the last transition
-- (Unschedulable, StartTimeout, Preempted, DeadlineExceeded...), multi-node jobs, the
-- counts of runs, failures, start timeouts, preemptions and suspensions, and one row
-- per run with its exit code (GET /api/training/jobs/{id}/attempts).
ALTER TABLE local_training_jobs DROP CONSTRAINT IF EXISTS local_training_jobs_status_check;
ALTER TABLE local_training_jobs ADD CONSTRAINT local_training_jobs_status_check
    CHECK (status IN ('queued', 'starting', 'running', 'cancelling', 'stopping', 'suspended',
                      'completed', 'failed', 'cancelled'));

ALTER TABLE local_training_jobs
    ADD COLUMN IF NOT EXISTS reason text,
    ADD COLUMN IF NOT EXISTS nodes integer NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS failures integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS start_timeouts integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS preemptions integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS suspensions integer NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS training_job_attempts (
    job_id uuid NOT NULL REFERENCES local_training_jobs (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    exit_code integer,
    reason text,
    started_at timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (job_id, attempt)
);
