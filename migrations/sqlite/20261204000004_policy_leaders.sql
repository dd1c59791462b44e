-- Who leads each policy, and in which term (src/catalog/leaders.rs). A
-- replica of `dr serve` that takes a policy's Kubernetes Lease claims the
-- Lease's term here (its leaseTransitions); a claim of an older term is
-- refused, and a replica whose term is no longer the row's cannot record a
-- tick, a point or its end (fencing: a paused or partitioned replica that
-- wakes up after another took over records nothing).
CREATE TABLE policy_leaders (
    policy TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    term BIGINT NOT NULL,
    since BIGINT NOT NULL
);
