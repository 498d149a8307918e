-- The kept plan in two parts (shunter.domain.estimates, format 2): body holds the
-- queued jobs' estimates, which the API reads with every new plan; timeline holds
-- what a what-if reads (every job's slots and needs, the nodes), which the API reads
-- only on the first what-if of a plan. computed_at is the plan's version (when the
-- operator last brought it up to date).
ALTER TABLE queue_plan ADD COLUMN IF NOT EXISTS timeline jsonb;
