-- Who did it: the user who submitted and the user who cancelled the job, as the API
-- recorded them (the TrainingJob's shunter.dev/submitted-by and cancelled-by
-- annotations). NULL when unknown (a job created or cancelled with kubectl).
ALTER TABLE local_training_jobs
    ADD COLUMN IF NOT EXISTS submitted_by text,
    ADD COLUMN IF NOT EXISTS cancelled_by text;
