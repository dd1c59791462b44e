# shellcheck shell=bash disable=SC2034 # variables are used by the scripts that source this
# Shared settings of the test bed scripts (sourced, not run).
# Versions: change one here and the cache directory changes with it.
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.10
KWOK_VERSION=v0.8.0
VERSITYGW_VERSION=v1.7.0

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

S3_ACCESS_KEY=drtest
S3_SECRET_KEY=drtest-secret-key
S3_REGION=us-east-1
S3_BUCKET=dr-test

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
export GOTOOLCHAIN=local

log() { printf '[testbed] %s\n' "$*" >&2; }
die() { printf '[testbed] error: %s\n' "$*" >&2; exit 1; }

# --- Run-time layout and helpers (used by up, down, status, sa-kubeconfig) --
PKI_DIR=$RUN_DIR/pki
LOG_DIR=$RUN_DIR/logs
PID_DIR=$RUN_DIR/pids
ADMIN_KUBECONFIG=$RUN_DIR/admin.kubeconfig
APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
PG_USER=dr
PG_PASSWORD=dr
# Components in start order; down stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok versitygw postgres)
KWOK_NODES=(kwok-node-0 kwok-node-1 kwok-node-2)

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

# kcurl PATH [CURL ARGS...]: a request to the apiserver as the admin.
kcurl() {
  local path=$1; shift
  curl -sS --max-time 10 --cacert "$PKI_DIR/ca.crt" \
    --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" "$@" "$APISERVER_URL$path"
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

# health NAME: the component answers its health check.
health() {
  local cacert=(--cacert "$PKI_DIR/ca.crt")
  case $1 in
    etcd) [[ $(curl -fsS --max-time 3 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" 2>/dev/null) == *'"health":"true"'* ]] ;;
    kube-apiserver) [ "$(kcurl /readyz 2>/dev/null)" = ok ] ;;
    kube-controller-manager) [ "$(curl -sS --max-time 3 "${cacert[@]}" "https://127.0.0.1:$KCM_PORT/healthz" 2>/dev/null)" = ok ] ;;
    kube-scheduler) [ "$(curl -sS --max-time 3 "${cacert[@]}" "https://127.0.0.1:$SCHEDULER_PORT/healthz" 2>/dev/null)" = ok ] ;;
    kwok) [ "$(curl -sS --max-time 3 "http://127.0.0.1:$KWOK_PORT/healthz" 2>/dev/null)" = ok ] ;;
    versitygw) curl -fsS --max-time 3 -o /dev/null "http://127.0.0.1:$S3_PORT/health" 2>/dev/null ;;
    postgres) pg_ping ;;
    *) die "unknown component $1" ;;
  esac
}

# port_busy PORT: something already accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# nodes_ready: every fake node exists and reports Ready=True.
nodes_ready() {
  local n
  n=$(kcurl /api/v1/nodes?labelSelector=type%3Dkwok 2>/dev/null | jq '[.items[]
    | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))] | length' 2>/dev/null) || return 1
  [ "${n:-0}" -ge "${#KWOK_NODES[@]}" ]
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
