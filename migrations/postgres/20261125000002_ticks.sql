-- Every firing of a policy's schedule, including the ones that did not make a
-- recovery point: skipped (the previous tick was still running) and missed
-- (dr was not running). They count against the RPO. Times: UTC epoch ms.
CREATE TABLE ticks (
    policy       TEXT NOT NULL REFERENCES policies(name),
    tick_at      BIGINT NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('ran', 'skipped', 'missed')),
    point_id     BIGINT REFERENCES recovery_points(id),
    reason       TEXT,
    recorded_at  BIGINT NOT NULL,
    PRIMARY KEY (policy, tick_at)
);
-- The RPO and status queries walk a policy's points newest first.
CREATE INDEX recovery_points_by_tick ON recovery_points (policy, tick_at);
