-- The operator's kept plan of the queue (shunter.domain.estimates): one row, the
-- whole plan as the operator last published it (every queued job's estimated start,
-- range or reason, and the timeline a what-if is answered from). The API reads it;
-- nothing else writes it. Written at most every SHUNTER_ESTIMATE_SECONDS.
CREATE TABLE IF NOT EXISTS queue_plan (
    id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    computed_at timestamptz NOT NULL,
    body jsonb NOT NULL
);
