-- Cancellation and the Kubernetes mirror: the status constraint gains 'cancelled' (and
-- the transient 'starting' and 'cancelling'); the row gains what the operator knows.
ALTER TABLE local_training_jobs DROP CONSTRAINT IF EXISTS local_training_jobs_status_check;
ALTER TABLE local_training_jobs ADD CONSTRAINT local_training_jobs_status_check
    CHECK (status IN ('queued', 'starting', 'running', 'cancelling',
                      'completed', 'failed', 'cancelled'));

ALTER TABLE local_training_jobs
    ADD COLUMN IF NOT EXISTS namespace text NOT NULL DEFAULT 'default',
    ADD COLUMN IF NOT EXISTS message text,
    ADD COLUMN IF NOT EXISTS queue text NOT NULL DEFAULT 'default',
    ADD COLUMN IF NOT EXISTS priority integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS gpus integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS queue_position integer,
    ADD COLUMN IF NOT EXISTS pod_name text,
    ADD COLUMN IF NOT EXISTS node_name text,
    ADD COLUMN IF NOT EXISTS exit_code integer,
    ADD COLUMN IF NOT EXISTS image text,
    ADD COLUMN IF NOT EXISTS admitted_at timestamptz,
    ADD COLUMN IF NOT EXISTS cancel_requested_at timestamptz,
    ADD COLUMN IF NOT EXISTS termination_outcome text,
    ADD COLUMN IF NOT EXISTS deleted_at timestamptz,
    -- The CR's resourceVersion of the mirrored state: an older replay never
    -- overwrites a newer row.
    ADD COLUMN IF NOT EXISTS resource_version bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();

CREATE INDEX IF NOT EXISTS local_training_jobs_status_idx
    ON local_training_jobs (status, created_at DESC);
CREATE INDEX IF NOT EXISTS local_training_jobs_name_idx
    ON local_training_jobs (namespace, name, created_at DESC);
