-- One kept plan per install (shunter.domain.scope.Scope.key: "*" for one serving the
-- whole cluster, else its namespaces): installs scoped to different namespaces may
-- share one database, and each API answers from its own operator's plan, not from
-- whichever wrote last. The plan is republished within seconds of an operator
-- starting, so the old single row is dropped rather than carried over.
DROP TABLE IF EXISTS queue_plan;
CREATE TABLE queue_plan (
    scope text PRIMARY KEY,
    computed_at timestamptz NOT NULL,
    body jsonb NOT NULL,
    timeline jsonb
);
