-- The procrastinate job that owns a notification's next send: only that job may claim it.
-- Several sends can share one job (a group commit's, or a batch's); a send of such a group
-- that must be retried moves to a job of its own, and the group's job never touches it again.
-- NULL (rows from before this column): any job may claim it, as before.
ALTER TABLE notifications ADD COLUMN job_id bigint;
