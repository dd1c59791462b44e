-- What the application's content looked like when the backup was taken, as
-- a policy's content probe reported it (e.g. a checksum): drills compare the
-- restored volume against it.
ALTER TABLE backups ADD COLUMN content_checksum TEXT;
