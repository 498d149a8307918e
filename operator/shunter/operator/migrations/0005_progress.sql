-- What the trainers report: how far a job got (its last progress report's step and
-- total) and its last complete checkpoint, on the job's row; and per run, the
-- checkpoint step it resumed from, the last checkpoint it reported and the seconds of
-- work it lost (since that checkpoint, or since it started). NULL when unknown: a
-- trainer that reports nothing, or a row written before this migration.
ALTER TABLE local_training_jobs
    ADD COLUMN IF NOT EXISTS progress_step bigint,
    ADD COLUMN IF NOT EXISTS total_steps bigint,
    ADD COLUMN IF NOT EXISTS checkpoint_step bigint,
    ADD COLUMN IF NOT EXISTS checkpointed_at timestamptz;

ALTER TABLE training_job_attempts
    ADD COLUMN IF NOT EXISTS resumed_from_step bigint,
    ADD COLUMN IF NOT EXISTS checkpoint_step bigint,
    ADD COLUMN IF NOT EXISTS lost_seconds double precision;
