#!/usr/bin/env bash
# Starts and stops the project's local services on loopback, for the main job and the tests:
#
#   PostgreSQL 15 (Debian)        127.0.0.1:$CAMELEER_PG_PORT      platform DB, job queue, postgres:// state backend
#   etcd 3.6.4                    127.0.0.1:$CAMELEER_ETCD_PORT    storage of the API server
#   per cluster of $CAMELEER_LOCAL_CLUSTERS (default "eu1 eu2 dc1"; the n-th, from 0, adds n to the ports):
#   kube-apiserver 1.34.3         https://127.0.0.1:$CAMELEER_KUBE_PORT (+n), etcd prefix of its own
#   kube-controller-manager       namespaces, garbage collection, service accounts, quotas,
#                                 deployments/replicasets/jobs, endpoints(lices), node lifecycle, pod GC
#   kube-scheduler 1.34.3         https://127.0.0.1:$CAMELEER_SCHEDULER_PORT (+n) (health only)
#   KWOK 0.8.0                    simulated nodes kwok-node-0..2 (tools/kwok/nodes.yaml)
#   stripe-mock 0.203.0           http://127.0.0.1:$CAMELEER_STRIPE_MOCK_PORT  Stripe's API emulator; HTTPS on +1
#                                 (stateless: answers every valid request from its fixtures)
#   OpenBao 2.7.2                 http://127.0.0.1:$CAMELEER_OPENBAO_PORT  Vault API: transit keys, KV
#                                 (a real server: raft storage, initialised and unsealed here,
#                                 audit log in the data directory; not -dev mode)
#
# No kubelet runs. KWOK plays the kubelet of the nodes annotated kwok.x-k8s.io/node=fake with
# the stages in tools/kwok/stages: nodes become Ready and keep heartbeating, scheduled pods get
# an IP from their node's podCIDR and become Running/Ready (no container runs; Job pods
# complete), deleted pods go away. So Deployments roll out, Services get endpoints and a
# ResourceQuota refuses pods, as on a real cluster. Every kubeconfig written here embeds its
# certificates (no file paths), so its content alone reaches the cluster.
#
# Usage: scripts/services.sh start|stop|status|env
#   start  idempotent; waits for readiness; writes $CAMELEER_DATA_DIR/services.env
#   stop   stops what start started, by pid file (never by process name)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

DATA="${CAMELEER_DATA_DIR:-$ROOT/.cameleer}"
RUN="$DATA/run"
ENV_FILE="$DATA/services.env"
VENV_BIN="$ROOT/.venv/bin"
PG_PORT="${CAMELEER_PG_PORT:-55432}"
ETCD_PORT="${CAMELEER_ETCD_PORT:-52379}"
ETCD_PEER_PORT=$((ETCD_PORT + 1))
KUBE_PORT="${CAMELEER_KUBE_PORT:-56443}"            # eu1's; each further cluster takes the next
SCHEDULER_PORT="${CAMELEER_SCHEDULER_PORT:-56459}"  # likewise
PLATFORM_CLUSTER=eu1
CLUSTERS="$(echo ${CAMELEER_LOCAL_CLUSTERS:-eu1 eu2 dc1})"
STRIPE_MOCK_PORT="${CAMELEER_STRIPE_MOCK_PORT:-52112}"
STRIPE_MOCK_HTTPS_PORT=$((STRIPE_MOCK_PORT + 1))
OPENBAO_PORT="${CAMELEER_OPENBAO_PORT:-58200}"
OPENBAO_DIR="$DATA/openbao"
PROVISIONER=cameleer_provisioner
KWOK_DIR="$ROOT/tools/kwok"
PG_BIN="/usr/lib/postgresql/15/bin"
PG_USER=postgres

# ---------------------------------------------------------------------------- helpers

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for <what> <seconds> <command...>; a daemon <what> that exits fails at once.
wait_for() {
    local what="$1" timeout="$2"; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        (( SECONDS < deadline )) || die "$what did not become ready within ${timeout}s (logs: $RUN)"
        if [[ -f "$RUN/$what.pid" ]] && ! pid_alive "$RUN/$what.pid"; then
            die "$what exited during start-up: $(tail -n 3 "$RUN/$what.log")"
        fi
        sleep 0.5
    done
}

# start_daemon <name> <command...>: background it with its own log and pid file.
start_daemon() {
    local name="$1"; shift
    if pid_alive "$RUN/$name.pid"; then
        return
    fi
    step "starting $name"
    setsid "$@" >"$RUN/$name.log" 2>&1 < /dev/null &
    echo $! > "$RUN/$name.pid"
}

stop_daemon() {
    local name="$1" pidfile="$RUN/$1.pid"
    if pid_alive "$pidfile"; then
        step "stopping $name"
        local pid; pid="$(cat "$pidfile")"
        kill "$pid"
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# Every port the services listen on, kept out of the kernel's ephemeral range (32768-60999 by
# default, where all of them lie): else a client connection of the moment (kubectl, an API
# server's to etcd) can hold one as its local port and the daemon cannot bind it. Only the
# kernel's automatic choice is affected; where /proc/sys is read-only this is skipped.
reserve_ports() {
    local file=/proc/sys/net/ipv4/ip_local_reserved_ports ports offset=0 cluster
    [[ -w "$file" ]] || return 0
    ports="$PG_PORT,$ETCD_PORT,$ETCD_PEER_PORT,$STRIPE_MOCK_PORT,$STRIPE_MOCK_HTTPS_PORT,$OPENBAO_PORT,$((OPENBAO_PORT + 1))"
    for cluster in $CLUSTERS; do
        ports+=",$((KUBE_PORT + offset)),$((SCHEDULER_PORT + offset))"
        offset=$((offset + 1))
    done
    local current; current="$(cat "$file")"
    echo "${current:+$current,}$ports" > "$file" 2>/dev/null || true
}

# ---------------------------------------------------------------------------- PostgreSQL

ensure_postgres_installed() {
    if [[ ! -x "$PG_BIN/pg_ctl" ]] || ! command -v psql >/dev/null; then
        step "installing PostgreSQL 15 from Debian"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null \
            || die "could not install PostgreSQL 15 (apt-get install postgresql-15 postgresql-client-15)"
    fi
}

as_pg() { runuser -u "$PG_USER" -- "$@"; }

start_postgres() {
    ensure_postgres_installed
    local pgdata="$DATA/postgres"
    if [[ ! -f "$pgdata/PG_VERSION" ]]; then
        step "initialising PostgreSQL cluster in $pgdata"
        mkdir -p "$pgdata" && chown "$PG_USER" "$pgdata" && chmod 700 "$pgdata"
        as_pg "$PG_BIN/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    chown "$PG_USER" "$RUN"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
        step "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -l "$RUN/postgres.log" -w -t 60 start \
            -o "-h 127.0.0.1 -p $PG_PORT -k $RUN -c max_connections=200" >/dev/null
    fi
    wait_for PostgreSQL 60 "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT"
    # The platform DB is owned by a plain role (migrations) and used by two that row-level
    # security applies to: the app role (one tenant's rows per transaction) and the system role
    # (every tenant's rows, by policy: login, signup, platform endpoints, workers). None is a
    # superuser, and the app role is not a member of the system role. The superuser DSN is for
    # tests and setup.
    local role
    for role in cameleer_owner cameleer_app cameleer_system; do
        psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$role'" | grep -q 1 \
            || psql_admin -qc "CREATE ROLE $role LOGIN NOSUPERUSER NOBYPASSRLS"
    done
    ensure_database cameleer cameleer_owner
    ensure_database pulumi_state postgres
    # Tenant schemas and roles live apart from the platform's own tables, made by a role that
    # may create roles and nothing more (no superuser). It owns the tenants' database and logs
    # in with its password only; the password lives in OpenBao (provision_tenant_database_admin).
    psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PROVISIONER'" | grep -q 1 \
        || psql_admin -qc "CREATE ROLE $PROVISIONER LOGIN CREATEROLE NOSUPERUSER NOCREATEDB NOREPLICATION NOBYPASSRLS"
    psql_admin -qc "GRANT pg_signal_backend TO $PROVISIONER" 2>/dev/null
    ensure_database cameleer_tenants "$PROVISIONER"
    psql_admin -qc "ALTER DATABASE cameleer_tenants OWNER TO $PROVISIONER"
    require_password_for "$PROVISIONER"
}

# require_password_for <role>: SCRAM for that role over TCP, before the trust rule of the rest.
require_password_for() {
    local hba="$DATA/postgres/pg_hba.conf" rule="host all $1 127.0.0.1/32 scram-sha-256"
    grep -qxF "$rule" "$hba" && return
    { echo "$rule"; cat "$hba"; } > "$hba.new"
    chown "$PG_USER" "$hba.new" && mv "$hba.new" "$hba"
    as_pg "$PG_BIN/pg_ctl" -D "$DATA/postgres" reload >/dev/null
}

ensure_database() {
    local db="$1" owner="$2"
    psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
        || psql_admin -qc "CREATE DATABASE $db OWNER $owner"
}

psql_admin() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }

stop_postgres() {
    local pgdata="$DATA/postgres"
    if [[ -f "$pgdata/postmaster.pid" ]]; then
        step "stopping PostgreSQL"
        as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null || true
    fi
}

# ---------------------------------------------------------------------------- Kubernetes
#
# One etcd serves every local cluster; each cluster has its own API server (etcd prefix, port,
# CA and certificates, service-account key), controller-manager, scheduler and KWOK with its
# own simulated nodes. The platform's own cluster, eu1, keeps the layout of the single-cluster
# days ($DATA/pki, $DATA/kubeconfig, etcd prefix /registry, daemons without a suffix), so a
# machine's data survives; every other cluster lives in $DATA/clusters/<name>/, its daemons are
# <daemon>-<name>, and its ports are eu1's plus the cluster's position in the list.

cluster_dir() { if [[ "$1" == "$PLATFORM_CLUSTER" ]]; then echo "$DATA"; else echo "$DATA/clusters/$1"; fi; }

# cluster_daemon <daemon> <cluster>: the name of the cluster's daemon (pid and log file).
cluster_daemon() { if [[ "$2" == "$PLATFORM_CLUSTER" ]]; then echo "$1"; else echo "$1-$2"; fi; }

cluster_etcd_prefix() { if [[ "$1" == "$PLATFORM_CLUSTER" ]]; then echo /registry; else echo "/clusters/$1/registry"; fi; }

# The OpenBao Kubernetes auth mount that checks the cluster's service-account tokens.
cluster_auth_mount() { if [[ "$1" == "$PLATFORM_CLUSTER" ]]; then echo kubernetes; else echo "kubernetes-$1"; fi; }

# CAMELEER_KUBECONFIG_<NAME>, the variable stacks/clusters.py reads.
cluster_kubeconfig_variable() { local name="${1^^}"; echo "CAMELEER_KUBECONFIG_${name//-/_}"; }

# check_cluster_list: eu1 first (it keeps today's ports and files), names fit for a variable and a path.
check_cluster_list() {
    local seen=" " cluster
    [[ "${CLUSTERS%% *}" == "$PLATFORM_CLUSTER" ]] \
        || die "CAMELEER_LOCAL_CLUSTERS must start with $PLATFORM_CLUSTER, the platform's own cluster (got '$CLUSTERS')"
    for cluster in $CLUSTERS; do
        [[ "$cluster" =~ ^[a-z][a-z0-9-]{0,30}$ ]] || die "CAMELEER_LOCAL_CLUSTERS: '$cluster' is not a cluster name (a-z, 0-9, -)"
        [[ "$seen" != *" $cluster "* ]] || die "CAMELEER_LOCAL_CLUSTERS names $cluster twice"
        seen+="$cluster "
    done
}

# The clusters to stop: the list's, then any other started into the data directory earlier.
known_clusters() {
    local cluster dir
    for cluster in $CLUSTERS; do echo "$cluster"; done
    for dir in "$DATA"/clusters/*/; do
        [[ -d "$dir" ]] || continue
        cluster="$(basename "$dir")"
        [[ " $CLUSTERS " == *" $cluster "* ]] || echo "$cluster"
    done
}

# write_pki <dir> <CA name>: the cluster's CA, serving certificate, service-account key and
# admin client certificate, once.
write_pki() {
    local pki="$1" ca_name="$2"
    if [[ -f "$pki/admin.crt" ]]; then
        write_client_cert "$pki" kube-scheduler "/CN=system:kube-scheduler"   # PKI of an earlier version
        return
    fi
    step "generating $ca_name, a serving certificate, a service-account key and an admin client certificate"
    mkdir -p "$pki"
    (
        cd "$pki"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$ca_name" \
            -keyout ca.key -out ca.crt 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc,IP:10.96.0.1\n' > san.ext
        openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile san.ext -out apiserver.crt 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=cameleer-admin" \
            -keyout admin.key -out admin.csr 2>/dev/null
        openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out admin.crt 2>/dev/null
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
        rm -f ./*.csr san.ext
        chmod 600 ./*.key
    )
    write_client_cert "$pki" kube-scheduler "/CN=system:kube-scheduler"
}

# write_client_cert <pki dir> <name> <subject>: a client certificate signed by the CA, once.
write_client_cert() {
    local pki="$1" name="$2" subject="$3"
    [[ -f "$pki/$name.crt" ]] && return
    (
        cd "$pki"
        openssl req -newkey rsa:2048 -nodes -subj "$subject" -keyout "$name.key" -out "$name.csr" 2>/dev/null
        openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -out "$name.crt.partial" 2>/dev/null
        rm -f "$name.csr"
        chmod 600 "$name.key"
        mv "$name.crt.partial" "$name.crt"
    )
}

# write_kubeconfig <file> <pki dir> <user> <port>: the client certificate <pki>/<user>.crt and
# the CA embedded, no file paths, so the content alone reaches the cluster (the stack programs
# pass it to the Kubernetes provider as a secret).
write_kubeconfig() {
    local file="$1" pki="$2" user="$3" port="$4"
    (
        umask 077
        cat > "$file.partial" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 < "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 < "$pki/$user.crt")
    client-key-data: $(base64 -w0 < "$pki/$user.key")
contexts:
- name: local
  context: {cluster: local, user: $user}
current-context: local
KUBECONFIG
    )
    mv "$file.partial" "$file"
}

# kubectl_of <cluster> <args...>: kubectl as the cluster's admin.
kubectl_of() { local cluster="$1"; shift; "$VENV_BIN/kubectl" --kubeconfig "$(cluster_dir "$cluster")/kubeconfig" "$@"; }

# kwok_nodes_ready <cluster>: every KWOK node Ready and without the node.kubernetes.io/not-ready
# taint, which only the node-lifecycle controller removes (until then nothing schedules).
kwok_nodes_ready() {
    local want
    want="$(grep -c '^kind: Node$' "$KWOK_DIR/nodes.yaml")"
    kubectl_of "$1" get nodes -l type=kwok -o \
        jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.spec.taints[*].key}{"\n"}{end}' \
        | awk -v want="$want" '$2 == "True" && $0 !~ /node\.kubernetes\.io\/not-ready/ { ready++ } END { exit !(ready == want) }'
}

start_etcd() {
    for tool in etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl; do
        [[ -x "$VENV_BIN/$tool" ]] || die "'$tool' is not built; run scripts/setup.sh (it builds the toolchain)"
    done
    mkdir -p "$DATA/etcd"
    start_daemon etcd "$VENV_BIN/etcd" --name local --data-dir "$DATA/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
        --quota-backend-bytes 2147483648 --log-level warn
    wait_for etcd 60 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
}

# start_cluster <name> <offset>: the cluster's API server on $KUBE_PORT + offset, its
# controller-manager, its scheduler on $SCHEDULER_PORT + offset and KWOK with its nodes.
start_cluster() {
    local cluster="$1" offset="$2"
    local dir pki port=$((KUBE_PORT + offset)) scheduler_port=$((SCHEDULER_PORT + offset))
    local apiserver controller_manager scheduler kwok
    dir="$(cluster_dir "$cluster")" pki="$(cluster_dir "$cluster")/pki"
    apiserver="$(cluster_daemon kube-apiserver "$cluster")"
    controller_manager="$(cluster_daemon kube-controller-manager "$cluster")"
    scheduler="$(cluster_daemon kube-scheduler "$cluster")"
    kwok="$(cluster_daemon kwok "$cluster")"
    mkdir -p "$dir"
    if [[ "$cluster" == "$PLATFORM_CLUSTER" ]]; then
        write_pki "$pki" cameleer-local-ca
    else
        write_pki "$pki" "cameleer-$cluster-ca"
    fi
    write_kubeconfig "$dir/kubeconfig" "$pki" admin "$port"
    write_kubeconfig "$dir/kube-scheduler.kubeconfig" "$pki" kube-scheduler "$port"

    start_daemon "$apiserver" "$VENV_BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" --etcd-prefix "$(cluster_etcd_prefix "$cluster")" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
        --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
        --client-ca-file "$pki/ca.crt" \
        --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
        --service-account-issuer https://kubernetes.default.svc \
        --service-cluster-ip-range 10.96.0.0/16 \
        --authorization-mode RBAC --enable-admission-plugins NamespaceLifecycle,ServiceAccount,PodSecurity,ResourceQuota,LimitRanger \
        --allow-privileged=false --profiling=false --event-ttl 10m
    wait_for "$apiserver" 120 kubectl_of "$cluster" get --raw /readyz

    # KWOK's heartbeat stage renews a node's conditions every 20-45 s (no Lease), so a node
    # counts as unhealthy after 2 min without one rather than the default 50 s, which a
    # CPU-starved KWOK could miss on 2 cores. --secure-port 0: no listener, so the clusters'
    # controller-managers cannot collide.
    local controllers=namespace-controller,garbage-collector-controller,serviceaccount-controller
    controllers+=,serviceaccount-token-controller,resourcequota-controller,root-ca-certificate-publisher-controller
    controllers+=,deployment-controller,replicaset-controller,job-controller
    controllers+=,endpoints-controller,endpointslice-controller,endpointslice-mirroring-controller
    controllers+=,node-lifecycle-controller,pod-garbage-collector-controller
    start_daemon "$controller_manager" "$VENV_BIN/kube-controller-manager" \
        --kubeconfig "$dir/kubeconfig" --authentication-kubeconfig "$dir/kubeconfig" \
        --authorization-kubeconfig "$dir/kubeconfig" \
        --authentication-skip-lookup=true --client-ca-file "$pki/ca.crt" \
        --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
        --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
        --use-service-account-credentials=false \
        --node-monitor-grace-period 2m --node-startup-grace-period 2m \
        --controllers "$controllers"
    wait_for "$controller_manager" 120 kubectl_of "$cluster" -n default get serviceaccount default

    local sched="$dir/kube-scheduler.kubeconfig"
    start_daemon "$scheduler" "$VENV_BIN/kube-scheduler" \
        --kubeconfig "$sched" --authentication-kubeconfig "$sched" --authorization-kubeconfig "$sched" \
        --authentication-skip-lookup=true --client-ca-file "$pki/ca.crt" \
        --bind-address 127.0.0.1 --secure-port "$scheduler_port" --leader-elect=false
    wait_for "$scheduler" 120 curl -skf "https://127.0.0.1:$scheduler_port/readyz"

    # The nodes first, then KWOK, which takes them over (Ready, heartbeat, their pods).
    kubectl_of "$cluster" apply -f "$KWOK_DIR/nodes.yaml" >/dev/null
    # Capacity is status: a cluster kept from an earlier start gets the file's sizes too.
    kubectl_of "$cluster" apply --server-side --force-conflicts --field-manager=cameleer-services \
        --subresource=status -f "$KWOK_DIR/nodes.yaml" >/dev/null
    local stage stages=()
    for stage in "$KWOK_DIR"/stages/*.yaml; do stages+=(--config "$stage"); done
    start_daemon "$kwok" "$VENV_BIN/kwok" --kubeconfig "$dir/kubeconfig" \
        --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
        "${stages[@]}"
    wait_for "$kwok" 120 kwok_nodes_ready "$cluster"
}

stop_cluster() {
    local daemon
    for daemon in kwok kube-scheduler kube-controller-manager kube-apiserver; do
        stop_daemon "$(cluster_daemon "$daemon" "$1")"
    done
}

status_cluster() {
    local cluster="$1" daemon name
    for daemon in kube-apiserver kube-controller-manager kube-scheduler kwok; do
        name="$(cluster_daemon "$daemon" "$cluster")"
        if pid_alive "$RUN/$name.pid"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"; else echo "$name: stopped"; fi
    done
    if pid_alive "$RUN/$(cluster_daemon kube-apiserver "$cluster").pid" && kubectl_of "$cluster" get --raw /readyz >/dev/null 2>&1; then
        echo "nodes of $cluster: $(kubectl_of "$cluster" get nodes -l type=kwok --no-headers 2>/dev/null | awk '$2 == "Ready" { n++ } END { print n + 0 }') Ready"
    fi
}

# for_each_cluster <function>: <function> <name> <offset> for each listed cluster, in order.
for_each_cluster() {
    local offset=0 cluster
    for cluster in $CLUSTERS; do
        "$1" "$cluster" "$offset"
        offset=$((offset + 1))
    done
}

# ---------------------------------------------------------------------------- OpenBao

bao_cli() { BAO_ADDR="http://127.0.0.1:$OPENBAO_PORT" "$VENV_BIN/bao" "$@"; }
bao_root() { BAO_TOKEN="$(cat "$OPENBAO_DIR/root-token")" bao_cli "$@"; }

write_openbao_config() {
    mkdir -p "$OPENBAO_DIR/data"
    chmod 700 "$OPENBAO_DIR"
    cat > "$OPENBAO_DIR/config.hcl" <<EOF
# Written by scripts/services.sh: a local, single-node OpenBao on loopback.
# OpenBao 2.x has no "file" storage any more; integrated storage (raft) on one node is the
# file-backed choice, and the one a production cluster uses too.
storage "raft" {
  path    = "$OPENBAO_DIR/data"
  node_id = "local"
}
listener "tcp" {
  address         = "127.0.0.1:$OPENBAO_PORT"
  cluster_address = "127.0.0.1:$((OPENBAO_PORT + 1))"
  tls_disable     = true
}
api_addr     = "http://127.0.0.1:$OPENBAO_PORT"
cluster_addr = "http://127.0.0.1:$((OPENBAO_PORT + 1))"
ui           = false
# Audit devices cannot be enabled through the API since 2.3.2: declared here.
audit "file" "file" {
  options {
    file_path = "$OPENBAO_DIR/audit.log"
  }
}
EOF
}

# Initialise once (one key share: local use only; the unseal key and root token stay in the
# data directory, mode 0600), unseal on every start, then the mounts the service uses.
init_and_unseal_openbao() {
    local status
    status="$(bao_cli status -format=json 2>/dev/null || true)"
    if [[ "$status" == *'"initialized": false'* ]]; then
        step "initialising OpenBao (one unseal key, kept in $OPENBAO_DIR)"
        (umask 077; bao_cli operator init -key-shares=1 -key-threshold=1 -format=json > "$OPENBAO_DIR/init.json")
        (umask 077; "$VENV_BIN/python" -c 'import json,sys; d=json.load(open(sys.argv[1])); open(sys.argv[2],"w").write(d["unseal_keys_b64"][0]); open(sys.argv[3],"w").write(d["root_token"])' \
            "$OPENBAO_DIR/init.json" "$OPENBAO_DIR/unseal-key" "$OPENBAO_DIR/root-token")
        rm -f "$OPENBAO_DIR/init.json"
        status="$(bao_cli status -format=json 2>/dev/null || true)"
    fi
    if [[ "$status" == *'"sealed": true'* ]]; then
        step "unsealing OpenBao"
        bao_cli operator unseal "$(cat "$OPENBAO_DIR/unseal-key")" >/dev/null
    fi
    wait_for openbao 30 bao_root token lookup
    local mounts
    mounts="$(bao_root secrets list -format=json)"
    [[ "$mounts" == *'"transit/"'* ]] || bao_root secrets enable transit >/dev/null
    [[ "$mounts" == *'"tenants/"'* ]] || bao_root secrets enable -path=tenants kv-v2 >/dev/null
}

start_openbao() {
    [[ -x "$VENV_BIN/bao" ]] || die "bao (OpenBao) is missing: run scripts/toolchain.sh"
    write_openbao_config
    start_daemon openbao "$VENV_BIN/bao" server -config="$OPENBAO_DIR/config.hcl"
    # Listening, sealed or not: `bao status` exits 0 (unsealed) or 2 (sealed), 1 on no answer.
    wait_for openbao 30 bao_listening
    init_and_unseal_openbao
    for_each_cluster configure_openbao_kubernetes_auth
    provision_tenant_database_admin
}

# The provisioner's password: generated once into OpenBao (platform/tenant-database, field
# url), and set on the role on every start, so a recreated role or a new OpenBao agree again.
# The server receives only a SCRAM verifier; the password is passed on stdin, never argv.
provision_tenant_database_admin() {
    [[ "$(bao_root secrets list -format=json)" == *'"platform/"'* ]] || bao_root secrets enable -path=platform kv-v2 >/dev/null
    local url
    if ! url="$(bao_root kv get -mount=platform -field=url tenant-database 2>/dev/null)"; then
        url="postgresql://$PROVISIONER:$(openssl rand -hex 24)@127.0.0.1:$PG_PORT/cameleer_tenants"
        printf '%s' "$url" | bao_root kv put -mount=platform tenant-database url=- >/dev/null
    fi
    local verifier
    verifier="$(PYTHONPATH="$ROOT" "$VENV_BIN/python" -c 'import sys
from urllib.parse import urlsplit
from components.providers.postgres import scram_verifier
print(scram_verifier(urlsplit(sys.stdin.read()).password))' <<<"$url")"
    psql_admin -qc "ALTER ROLE $PROVISIONER PASSWORD '$verifier'"
}

# Tenant servers log in with their service-account token: OpenBao checks it with the API
# server of the tenant's cluster (TokenReview), as that cluster's account
# openbao-token-reviewer (system:auth-delegator), whose long-lived token the service-account
# token controller writes into a Secret. Each cluster signs its tokens with its own key, so each
# has its own auth mount: auth/kubernetes for eu1, auth/kubernetes-<name> for the others.
# configure_openbao_kubernetes_auth <cluster> <offset>
configure_openbao_kubernetes_auth() {
    local cluster="$1" offset="$2" mount
    mount="$(cluster_auth_mount "$cluster")"
    [[ "$(bao_root auth list -format=json)" == *"\"$mount/\""* ]] || bao_root auth enable -path="$mount" kubernetes >/dev/null
    kubectl_of "$cluster" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: openbao-token-reviewer, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: openbao-token-reviewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}
subjects: [{kind: ServiceAccount, name: openbao-token-reviewer, namespace: kube-system}]
---
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: openbao-token-reviewer
  namespace: kube-system
  annotations: {kubernetes.io/service-account.name: openbao-token-reviewer}
EOF
    wait_for "the token reviewer's token of $cluster" 30 reviewer_token "$cluster"
    bao_root write "auth/$mount/config" kubernetes_host="https://127.0.0.1:$((KUBE_PORT + offset))" \
        kubernetes_ca_cert=@"$(cluster_dir "$cluster")/pki/ca.crt" token_reviewer_jwt="$(reviewer_token "$cluster")" >/dev/null
}

reviewer_token() {
    local token
    token="$(kubectl_of "$1" -n kube-system get secret openbao-token-reviewer -o 'jsonpath={.data.token}' 2>/dev/null)"
    [[ -n "$token" ]] && base64 -d <<<"$token"
}

bao_listening() {
    local code=0
    bao_cli status >/dev/null 2>&1 || code=$?
    [[ $code -ne 1 ]]
}

# ---------------------------------------------------------------------------- stripe-mock

start_stripe_mock() {
    [[ -x "$VENV_BIN/stripe-mock" ]] || die "stripe-mock is missing: run scripts/toolchain.sh"
    # No -strict-version-check: stripe-python 16 sends a newer API version than the mock's spec.
    # Its HTTPS listener too, else it takes *:12112 and a second instance of these services collides.
    start_daemon stripe-mock "$VENV_BIN/stripe-mock" -http-addr "127.0.0.1:$STRIPE_MOCK_PORT" \
        -https-addr "127.0.0.1:$STRIPE_MOCK_HTTPS_PORT"
    wait_for stripe-mock 30 curl -sf -u sk_test_123: "http://127.0.0.1:$STRIPE_MOCK_PORT/v1/balance"
}

# ---------------------------------------------------------------------------- env file

# The kubeconfig of each cluster but eu1 (KUBECONFIG) as CAMELEER_KUBECONFIG_<NAME>.
cluster_kubeconfig_exports() {
    local cluster
    for cluster in $CLUSTERS; do
        [[ "$cluster" == "$PLATFORM_CLUSTER" ]] || echo "export $(cluster_kubeconfig_variable "$cluster")=\"$(cluster_dir "$cluster")/kubeconfig\""
    done
}

write_env() {
    local pg="127.0.0.1:$PG_PORT"
    local passphrase_file="$DATA/passphrase"
    [[ -f "$passphrase_file" ]] || (umask 077; openssl rand -hex 24 > "$passphrase_file")
    local webhook_secret_file="$DATA/stripe-webhook-secret"
    [[ -f "$webhook_secret_file" ]] || (umask 077; echo "whsec_$(openssl rand -hex 24)" > "$webhook_secret_file")
    cat > "$ENV_FILE" <<EOF
# Written by scripts/services.sh; local development settings only.
export CAMELEER_DATA_DIR="$DATA"
export KUBECONFIG="$DATA/kubeconfig"
export CAMELEER_LOCAL_CLUSTERS="$CLUSTERS"
# Registered clusters' kubeconfigs (cameleer-clusters register) are read from the secrets server here.
export CAMELEER_CLUSTER_KUBECONFIGS="platform/clusters"
$(cluster_kubeconfig_exports)
export CAMELEER_DATABASE_URL="postgresql+psycopg://cameleer_app@$pg/cameleer"
export CAMELEER_DATABASE_ADMIN_URL="postgresql+psycopg://cameleer_owner@$pg/cameleer"
export CAMELEER_DATABASE_SYSTEM_URL="postgresql+psycopg://cameleer_system@$pg/cameleer"
export CAMELEER_TEST_DATABASE_URL="postgresql+psycopg://postgres@$pg/postgres"
export CAMELEER_TENANT_DATABASE_ENDPOINT="$pg"
export CAMELEER_TENANT_DATABASE_ADMIN_SECRET="platform/tenant-database"
# Where tenant servers reach OpenBao and the control plane (the local clusters reach loopback).
export CAMELEER_TENANT_SECRETS_ADDRESS="http://127.0.0.1:$OPENBAO_PORT"
export CAMELEER_TENANT_CONTROL_PLANE_URL="\${CAMELEER_PUBLIC_BASE_URL:-http://127.0.0.1:8080}"
export CAMELEER_POSTGRES_ADMIN_DSN="postgresql://postgres@$pg/postgres"
export CAMELEER_STATE_POSTGRES_URL="postgres://postgres@$pg/pulumi_state?sslmode=disable"
export PULUMI_BACKEND_URL="file://$DATA/state"
export PULUMI_CONFIG_PASSPHRASE_FILE="$passphrase_file"
export PULUMI_HOME="$DATA/pulumi-home"
export CAMELEER_STRIPE_API_BASE="http://127.0.0.1:$STRIPE_MOCK_PORT"
export CAMELEER_STRIPE_API_KEY="sk_test_123"
export CAMELEER_STRIPE_WEBHOOK_SECRET="\$(cat "$webhook_secret_file")"
export VAULT_ADDR="http://127.0.0.1:$OPENBAO_PORT"
export VAULT_TOKEN="\$(cat "$OPENBAO_DIR/root-token")"
export CAMELEER_OPENBAO_UNSEAL_KEY_FILE="$OPENBAO_DIR/unseal-key"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DIY_BACKEND_NO_LEGACY_WARNING=true
export PATH="$VENV_BIN:\$PATH"
EOF
    mkdir -p "$DATA/state" "$DATA/pulumi-home"
    step "services ready; settings in $ENV_FILE"
}

# ---------------------------------------------------------------------------- main

case "${1:-}" in
    start)
        check_cluster_list
        reserve_ports
        mkdir -p "$RUN"
        start_postgres
        start_etcd
        for_each_cluster start_cluster
        start_stripe_mock
        start_openbao
        write_env
        ;;
    stop)
        # Reverse order of start. Objects stay in etcd; a pod deleted while KWOK is down stays
        # Terminating until KWOK runs again (delete namespaces before stopping to leave none).
        for daemon in openbao stripe-mock; do stop_daemon "$daemon"; done
        for cluster in $(known_clusters | tac); do stop_cluster "$cluster"; done
        stop_daemon etcd
        stop_postgres
        ;;
    status)
        for cluster in $(known_clusters); do status_cluster "$cluster"; done
        for daemon in etcd stripe-mock openbao; do
            if pid_alive "$RUN/$daemon.pid"; then echo "$daemon: running (pid $(cat "$RUN/$daemon.pid"))"; else echo "$daemon: stopped"; fi
        done
        if "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1; then echo "postgres: running"; else echo "postgres: stopped"; fi
        ;;
    env)
        cat "$ENV_FILE"
        ;;
    *)
        echo "usage: $0 start|stop|status|env" >&2
        exit 64
        ;;
esac
