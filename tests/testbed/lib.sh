# shellcheck shell=bash disable=SC2034 # variables are used by the scripts that source this
# Shared settings of the test bed scripts (sourced, not run).
# Versions: change one here and the cache directory changes with it.
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.10
KWOK_VERSION=v0.8.0
VERSITYGW_VERSION=v1.7.0
HELM_VERSION=v4.3.2
PROM_OPERATOR_VERSION=v0.85.0

TESTBED_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$TESTBED_DIR/../.." && pwd)
# Built binaries live outside the checkout so a fresh clone reuses them.
CACHE_DIR=${DR_TESTBED_CACHE:-$HOME/.cache/dr-testbed}
BIN_DIR=$CACHE_DIR/bin
# Running state (certificates, data, logs, pids) lives in the checkout's target/.
RUN_DIR=${DR_TESTBED_RUN:-$REPO_DIR/target/testbed}
ENV_FILE=${DR_TESTBED_ENV:-$REPO_DIR/target/testbed.env}

# Loopback ports, unusual to avoid clashes.
ETCD_CLIENT_PORT=${ETCD_CLIENT_PORT:-32379}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-32380}
APISERVER_PORT=${APISERVER_PORT:-36443}
KCM_PORT=${KCM_PORT:-30257}
SCHEDULER_PORT=${SCHEDULER_PORT:-30259}
KWOK_PORT=${KWOK_PORT:-30247}
S3_PORT=${S3_PORT:-39000}
PG_PORT=${PG_PORT:-35432}
# Cluster B: a second control plane with its own etcd, PKI and kwok nodes
# (the cluster a disaster recovers into). S3 and PostgreSQL are shared.
ETCD_B_CLIENT_PORT=${ETCD_B_CLIENT_PORT:-32479}
ETCD_B_PEER_PORT=${ETCD_B_PEER_PORT:-32480}
APISERVER_B_PORT=${APISERVER_B_PORT:-36543}
KCM_B_PORT=${KCM_B_PORT:-30357}
SCHEDULER_B_PORT=${SCHEDULER_B_PORT:-30359}
KWOK_B_PORT=${KWOK_B_PORT:-30347}

S3_ACCESS_KEY=drtest
S3_SECRET_KEY=drtest-secret-key
S3_REGION=us-east-1
S3_BUCKET=dr-test

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
export GOTOOLCHAIN=local

log() { printf '[testbed] %s\n' "$*" >&2; }
die() { printf '[testbed] error: %s\n' "$*" >&2; exit 1; }

# --- Run-time layout and helpers (used by up, down, status, sa-kubeconfig) --
LOG_DIR=$RUN_DIR/logs
PID_DIR=$RUN_DIR/pids
PG_USER=dr
PG_PASSWORD=dr
CLUSTERS=(a b)
# Cluster A keeps the layout it always had (run dir's pki/, admin.kubeconfig,
# etcd/); cluster B lives in the run dir's b/, its components end in -b.
PKI_DIR=$RUN_DIR/pki
ADMIN_KUBECONFIG=$RUN_DIR/admin.kubeconfig
APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
ADMIN_KUBECONFIG_B=$RUN_DIR/b/admin.kubeconfig
CLUSTER_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
SERVICES=(versitygw postgres)
# Components in start order; down stops them in reverse.
COMPONENTS=("${CLUSTER_COMPONENTS[@]}" "${CLUSTER_COMPONENTS[@]/%/-b}" "${SERVICES[@]}")

# use_cluster a|b: point the CL_* variables (and kcurl, nodes_ready,
# default_sa_exists) at one cluster. Scripts start with cluster A.
use_cluster() {
  case $1 in
    a)
      CL=a CL_SUFFIX='' CL_NAME=dr-testbed CL_DIR=$RUN_DIR
      CL_ETCD_CLIENT_PORT=$ETCD_CLIENT_PORT CL_ETCD_PEER_PORT=$ETCD_PEER_PORT
      CL_APISERVER_PORT=$APISERVER_PORT CL_KCM_PORT=$KCM_PORT
      CL_SCHEDULER_PORT=$SCHEDULER_PORT CL_KWOK_PORT=$KWOK_PORT
      CL_NODES=(kwok-node-0 kwok-node-1 kwok-node-2)
      ;;
    b)
      CL=b CL_SUFFIX=-b CL_NAME=dr-testbed-b CL_DIR=$RUN_DIR/b
      CL_ETCD_CLIENT_PORT=$ETCD_B_CLIENT_PORT CL_ETCD_PEER_PORT=$ETCD_B_PEER_PORT
      CL_APISERVER_PORT=$APISERVER_B_PORT CL_KCM_PORT=$KCM_B_PORT
      CL_SCHEDULER_PORT=$SCHEDULER_B_PORT CL_KWOK_PORT=$KWOK_B_PORT
      CL_NODES=(kwok-b-node-0 kwok-b-node-1 kwok-b-node-2)
      ;;
    *) die "unknown cluster $1 (a or b)" ;;
  esac
  CL_PKI=$CL_DIR/pki
  CL_KUBECONFIG=$CL_DIR/admin.kubeconfig
  CL_APISERVER_URL=https://127.0.0.1:$CL_APISERVER_PORT
}
use_cluster a
# cluster_ports: every port of the current cluster.
cluster_ports() {
  echo "$CL_ETCD_CLIENT_PORT" "$CL_ETCD_PEER_PORT" "$CL_APISERVER_PORT" "$CL_KCM_PORT" \
    "$CL_SCHEDULER_PORT" "$CL_KWOK_PORT"
}

pid_of() { # pid_of NAME: the recorded pid, or nothing
  local f=$PID_DIR/$1.pid
  [ -s "$f" ] && cat "$f"
  return 0
}
# alive PID: the process exists and is not a zombie waiting for init to
# reap it (the scripts exit, so init becomes every component's parent).
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}
running() { # running NAME: the recorded process is alive
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && alive "$pid"
}

# kcurl PATH [CURL ARGS...]: a request to the current cluster's apiserver as the admin.
kcurl() {
  local path=$1; shift
  curl -sS --max-time 10 --cacert "$CL_PKI/ca.crt" \
    --cert "$CL_PKI/admin.crt" --key "$CL_PKI/admin.key" "$@" "$CL_APISERVER_URL$path"
}

# S3 requests without a body, signed with the root credentials. S3 wants the
# payload's hash in x-amz-content-sha256; curl signs the value given here.
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
s3curl() {
  local path=$1; shift
  curl -sS --max-time 10 --aws-sigv4 "aws:amz:$S3_REGION:s3" -H "x-amz-content-sha256: $EMPTY_SHA256" \
    --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" "$@" "http://127.0.0.1:$S3_PORT$path"
}

pg_ping() { # password login as the dr role over TCP
  [ "$(PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=3 psql -X -q -h 127.0.0.1 -p "$PG_PORT" \
    -U "$PG_USER" -d postgres -tAc 'select 1' 2>/dev/null)" = 1 ]
}

# health NAME: the component answers its health check (a name ending in -b
# is cluster B's; run in a subshell, so the caller's cluster stays as it was).
health() (
  local name=$1
  case $name in
    *-b) use_cluster b; name=${name%-b} ;;
    *) use_cluster a ;;
  esac
  local cacert=(--cacert "$CL_PKI/ca.crt")
  case $name in
    etcd) [[ $(curl -fsS --max-time 3 "http://127.0.0.1:$CL_ETCD_CLIENT_PORT/health" 2>/dev/null) == *'"health":"true"'* ]] ;;
    kube-apiserver) [ "$(kcurl /readyz 2>/dev/null)" = ok ] ;;
    kube-controller-manager) [ "$(curl -sS --max-time 3 "${cacert[@]}" "https://127.0.0.1:$CL_KCM_PORT/healthz" 2>/dev/null)" = ok ] ;;
    kube-scheduler) [ "$(curl -sS --max-time 3 "${cacert[@]}" "https://127.0.0.1:$CL_SCHEDULER_PORT/healthz" 2>/dev/null)" = ok ] ;;
    kwok) [ "$(curl -sS --max-time 3 "http://127.0.0.1:$CL_KWOK_PORT/healthz" 2>/dev/null)" = ok ] ;;
    versitygw) curl -fsS --max-time 3 -o /dev/null "http://127.0.0.1:$S3_PORT/health" 2>/dev/null ;;
    postgres) pg_ping ;;
    *) die "unknown component $1" ;;
  esac
)

# port_busy PORT: something already accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# nodes_ready: every fake node of the current cluster exists and reports Ready=True.
nodes_ready() {
  local n
  n=$(kcurl /api/v1/nodes?labelSelector=type%3Dkwok 2>/dev/null | jq '[.items[]
    | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))] | length' 2>/dev/null) || return 1
  [ "${n:-0}" -ge "${#CL_NODES[@]}" ]
}
default_sa_exists() { kcurl /api/v1/namespaces/default/serviceaccounts/default -f -o /dev/null 2>/dev/null; }
bucket_exists() { s3curl "/$S3_BUCKET" -f -o /dev/null -I 2>/dev/null; }

tail_log() { # tail_log NAME: the end of a component's log, for failures
  local f=$LOG_DIR/$1.log
  [ -f "$f" ] || return 0
  printf '[testbed] ---- last lines of %s ----\n' "$f" >&2
  tail -n 40 "$f" >&2
  printf '[testbed] ----\n' >&2
}

# wait_for SECONDS COMPONENT WHAT CHECK [ARGS...]: poll CHECK every half
# second; fail with COMPONENT's log tail if it times out or the process dies.
wait_for() {
  local limit=$1 comp=$2 what=$3; shift 3
  local deadline=$((SECONDS + limit)) t0=$SECONDS
  until "$@"; do
    if [ -f "$PID_DIR/$comp.pid" ] && ! running "$comp"; then
      tail_log "$comp"
      die "$comp exited while waiting for: $what"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail_log "$comp"
      die "timed out after ${limit} s waiting for: $what"
    fi
    sleep 0.5
  done
  log "$what ($((SECONDS - t0)) s)"
}

# --- PostgreSQL (Debian's packages) -----------------------------------------
pg_bin_dir() { # newest installed server version's bin directory, or nothing
  local d best=
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] || continue
    if [ -z "$best" ] || [ "$(printf '%s\n' "$best" "$d" | sort -V | tail -n 1)" = "$d" ]; then best=$d; fi
  done
  [ -z "$best" ] || echo "$best"
}
# Postgres refuses to run as root: as root, run it as the postgres user.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}
# Where the cluster lives: the run dir, unless the postgres user cannot
# reach it (e.g. a checkout under /root); up then records a /tmp directory.
pg_root() {
  if [ -s "$RUN_DIR/pg.dir" ]; then cat "$RUN_DIR/pg.dir"; else echo "$RUN_DIR/pg"; fi
}
