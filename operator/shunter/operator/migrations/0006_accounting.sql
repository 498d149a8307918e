-- Accounting (GET /api/training/usage): per run, when it began to wait, got its GPUs
-- and ran, the GPUs it held, how it ended, and the figures derived from them
-- (shunter.domain.usage), so a sum over a window is one scan. NULL for a run still
-- going and for runs mirrored before this migration (the API derives theirs from
-- started_at and finished_at).
ALTER TABLE training_job_attempts
    ADD COLUMN IF NOT EXISTS queued_at timestamptz,
    ADD COLUMN IF NOT EXISTS admitted_at timestamptz,
    ADD COLUMN IF NOT EXISTS running_at timestamptz,
    ADD COLUMN IF NOT EXISTS gpus integer,
    ADD COLUMN IF NOT EXISTS outcome text,
    ADD COLUMN IF NOT EXISTS allocated_seconds double precision,
    ADD COLUMN IF NOT EXISTS run_seconds double precision,
    ADD COLUMN IF NOT EXISTS wait_seconds double precision,
    ADD COLUMN IF NOT EXISTS lost_gpu_seconds double precision;

CREATE INDEX IF NOT EXISTS training_job_attempts_finished_idx
    ON training_job_attempts (finished_at);

-- Retention (SHUNTER_USAGE_RETENTION_DAYS) deletes a job's oldest runs; the highest
-- attempt number it deleted is kept here, so the gap count (runs the cluster no
-- longer held when the mirror wrote) does not count deleted runs as missing, and a
-- run still in status.history is not written again once deleted.
ALTER TABLE local_training_jobs
    ADD COLUMN IF NOT EXISTS attempts_pruned integer NOT NULL DEFAULT 0;
