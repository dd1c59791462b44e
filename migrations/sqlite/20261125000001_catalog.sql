-- dr catalog, SQLite. Every timestamp is UTC milliseconds since the Unix epoch
-- (BIGINT), the same on SQLite and PostgreSQL, so ordering and index seeks are
-- exact on both.

CREATE TABLE policies (
    name        TEXT PRIMARY KEY,
    namespace   TEXT NOT NULL,
    selector    TEXT NOT NULL DEFAULT '',
    schedule    TEXT NOT NULL,
    rpo_ms      BIGINT NOT NULL CHECK (rpo_ms > 0),
    rto_ms      BIGINT NOT NULL CHECK (rto_ms > 0),
    updated_at  BIGINT NOT NULL
);

-- One row per tick of a policy; its time (point_at) is the oldest snapshot
-- time among its backups, known once the backups are done.
CREATE TABLE recovery_points (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    policy        TEXT NOT NULL REFERENCES policies(name),
    tick_at       BIGINT NOT NULL,
    point_at      BIGINT,
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'complete', 'partial', 'failed', 'pruned')),
    bundle_key    TEXT,
    reason        TEXT,
    created_at    BIGINT NOT NULL,
    finished_at   BIGINT,
    pruned_at     BIGINT,
    UNIQUE (policy, tick_at)
);
-- The planning query (newest complete point at or before T) and the window
-- (oldest/newest complete point) are seeks on this index.
CREATE INDEX recovery_points_plan ON recovery_points (policy, state, point_at);

CREATE TABLE backups (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    point_id       BIGINT NOT NULL REFERENCES recovery_points(id),
    volume         TEXT NOT NULL,
    pvc            TEXT,
    snapshot_name  TEXT NOT NULL,
    backup_name    TEXT,
    backup_url     TEXT,
    state          TEXT NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'snapshotting', 'backing_up', 'completed', 'failed', 'pruned')),
    progress       BIGINT NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    size_bytes     BIGINT,
    snapshot_at    BIGINT,
    requested_at   BIGINT NOT NULL,
    completed_at   BIGINT,
    error          TEXT,
    verification   TEXT NOT NULL DEFAULT 'unverified'
                   CHECK (verification IN ('unverified', 'verified', 'mismatch')),
    verified_at    BIGINT,
    pruned_at      BIGINT,
    UNIQUE (point_id, volume)
);
CREATE INDEX backups_state ON backups (state);

CREATE TABLE incidents (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    policy       TEXT REFERENCES policies(name),
    title        TEXT NOT NULL,
    source       TEXT NOT NULL CHECK (source IN ('declared', 'probe', 'restore')),
    opened_at    BIGINT NOT NULL,
    resolved_at  BIGINT,
    note         TEXT,
    CHECK (resolved_at IS NULL OR resolved_at >= opened_at)
);
CREATE INDEX incidents_by_time ON incidents (opened_at);

CREATE TABLE runs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    kind              TEXT NOT NULL CHECK (kind IN ('restore', 'drill')),
    policy            TEXT NOT NULL REFERENCES policies(name),
    point_id          BIGINT REFERENCES recovery_points(id),
    target_namespace  TEXT NOT NULL,
    target_at         BIGINT,
    state             TEXT NOT NULL DEFAULT 'running'
                      CHECK (state IN ('running', 'succeeded', 'failed')),
    incident_id       BIGINT REFERENCES incidents(id),
    started_at        BIGINT NOT NULL,
    finished_at       BIGINT,
    error             TEXT
);
-- At most one running run per target namespace: the restore lock.
CREATE UNIQUE INDEX runs_one_running_per_target ON runs (target_namespace) WHERE state = 'running';
CREATE INDEX runs_by_policy ON runs (policy, started_at);

CREATE TABLE run_steps (
    run_id       BIGINT NOT NULL REFERENCES runs(id),
    seq          BIGINT NOT NULL,
    stage        TEXT NOT NULL,
    step         TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    budget_ms    BIGINT,
    started_at   BIGINT,
    finished_at  BIGINT,
    detail       TEXT,
    PRIMARY KEY (run_id, seq)
);
