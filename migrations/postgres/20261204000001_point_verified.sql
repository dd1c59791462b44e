-- When every backup of a complete recovery point had been verified in the
-- store: the RPO counts from that point. Kept on the point itself so the
-- report, `dr status` and `/metrics` read no backup rows, and so it survives
-- pruning and the compaction of a pruned point's backup rows.
ALTER TABLE recovery_points ADD COLUMN verified_at BIGINT;

-- Points that were verified before the column existed. A pruned point counts
-- when it had backups and every one was verified (only completed backups are).
UPDATE recovery_points SET verified_at = COALESCE(
    (SELECT MAX(b.verified_at) FROM backups b WHERE b.point_id = recovery_points.id),
    finished_at)
 WHERE point_at IS NOT NULL AND finished_at IS NOT NULL
   AND (state = 'complete'
        OR (state = 'pruned'
            AND EXISTS (SELECT 1 FROM backups b WHERE b.point_id = recovery_points.id)))
   AND NOT EXISTS (SELECT 1 FROM backups b
                   WHERE b.point_id = recovery_points.id AND b.verification <> 'verified');

-- Compaction finds pruned points by when they were pruned.
CREATE INDEX recovery_points_pruned ON recovery_points (state, pruned_at);
