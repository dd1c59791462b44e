-- Who runs a run, and when it last said so: a running run whose heartbeat is
-- stale belongs to a process that died, and the same command resumes it.
ALTER TABLE runs ADD COLUMN holder TEXT;
ALTER TABLE runs ADD COLUMN heartbeat_at BIGINT;
-- The run's summary (stages against budgets, RTO and RPO verdicts), JSON.
ALTER TABLE runs ADD COLUMN summary TEXT;
