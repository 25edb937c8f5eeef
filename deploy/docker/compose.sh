# The Compose part of `make docker-test`, sourced by deploy/docker/test.sh (which provides log, die, as_root,
# apt_install, build_image, elapsed, ensure_base_image's debian_mirror, $WORK, $RUN_ID, $PY, $BASE_IMAGE).
#
# Runs deploy/compose/compose.yaml's stack through deploy/compose/compose.host.yaml (host networking: this engine
# has no bridge network) with Debian's docker-compose 1.29, from the repository root, on the images test.sh built:
# MLflow seeded from exports/runs, the lean API twice behind nginx, the product pointed at MLflow. Checks that
# Compose refuses to start without each required secret, each service (deploy/docker/compose_smoke.py: MLflow
# refuses anonymous writes and reads, the product's user only reads, the API needs a key), that the product reads
# its runs as the read-only user, that the API and product containers run read-only, without capabilities and as
# uid 10001, then takes the stack down (volumes included), also when a check fails.
#
# The secrets are made fresh for each run and reach docker-compose and compose_smoke.py through their
# environment only (exported in a subshell: never on a command line, which `ps` shows, never printed). An empty
# --env-file keeps a developer's .env (beside compose.yaml) out of the test.

MLFLOW_TAG=${MLFLOW_TAG:-tweet-sentiment-mlflow:test}
NGINX_IMAGE=${NGINX_IMAGE:-nginx:1.27}
NGINX_STANDIN_NOTE="stand-in made by deploy/docker/compose.sh with debootstrap"
COMPOSE_PROJECT=""
COMPOSE_PORTS=(15000 18001 18002 18080 18501)
# Named with -f (so compose.override.yaml, whose published ports host networking refuses, is left out); paths
# inside them are relative to deploy/compose/, the folder of the first file.
COMPOSE_FILES=(-f deploy/compose/compose.yaml -f deploy/compose/compose.host.yaml)
# What compose.yaml requires (${NAME:?...}): without any of them, docker-compose refuses to start the stack.
COMPOSE_REQUIRED=(API_KEYS MLFLOW_ADMIN_PASSWORD MLFLOW_READER_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY)
declare -A COMPOSE_SECRETS=()

compose_make_secrets() {
  local name
  for name in "${COMPOSE_REQUIRED[@]}"; do
    COMPOSE_SECRETS[$name]=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')
  done
  : >"$WORK/compose.env"  # empty: the stack gets only what is exported here
}

with_secrets() {  # COMMAND... -> runs it with the stack's secrets exported (in a subshell), the images named
  (
    local name
    for name in "${!COMPOSE_SECRETS[@]}"; do export "$name=${COMPOSE_SECRETS[$name]}"; done
    export API_IMAGE="$LEAN_TAG" APP_IMAGE="$FULL_TAG" MLFLOW_IMAGE="$MLFLOW_TAG" NGINX_IMAGE="$NGINX_IMAGE"
    exec "$@"
  )
}

compose() {
  with_secrets docker-compose --env-file "$WORK/compose.env" "${COMPOSE_FILES[@]}" -p "$COMPOSE_PROJECT" "$@"
}

compose_refuses_without_secrets() {  # -> sets COMPOSE_REFUSED (JSON list of the names it refused to start without)
  local name refused=()
  for name in "${COMPOSE_REQUIRED[@]}"; do
    if with_secrets env -u "$name" docker-compose --env-file "$WORK/compose.env" "${COMPOSE_FILES[@]}" \
         -p "$COMPOSE_PROJECT" config -q >"$WORK/compose-refused.log" 2>&1; then
      die "docker-compose accepts the stack without $name"
    fi
    grep -q "set $name" "$WORK/compose-refused.log" || { tail -3 "$WORK/compose-refused.log" >&2; die "docker-compose failed without $name, but not for it"; }
    refused+=("$name")
  done
  COMPOSE_REFUSED=$("$PY" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${refused[@]}")
  log "compose refuses to start without each of ${refused[*]}"
}

compose_down() {  # called by test.sh's cleanup, whatever happened
  [ -n "$COMPOSE_PROJECT" ] || return 0
  log "docker-compose down -v ($COMPOSE_PROJECT)"
  compose down -v --remove-orphans >"$WORK/compose-down.log" 2>&1 || tail -5 "$WORK/compose-down.log" >&2
  COMPOSE_PROJECT=""
}

ensure_compose() {
  command -v docker-compose >/dev/null || apt_install docker-compose \
    || { tail -5 "$WORK/apt.log" >&2; die "docker-compose (Debian's 1.29) could not be installed"; }
  log "$(docker-compose version --short 2>/dev/null | head -1 | sed 's/^/docker-compose /')"
}

ensure_nginx_image() {
  # No registry is assumed: a Debian bookworm minbase with nginx-light, run like the official image (logs to
  # stdout/stderr, `daemon off`, conf.d/*.conf included), imported under the official name.
  if docker image inspect "$NGINX_IMAGE" >/dev/null 2>&1; then
    log "nginx image $NGINX_IMAGE is present"
    return
  fi
  log "$NGINX_IMAGE is missing: building a Debian $SUITE stand-in with nginx-light"
  local mirror rootfs=$WORK/nginx-rootfs started
  started=$(date +%s.%N)
  mirror=$(debian_mirror) || die "no Debian archive in this machine's apt sources: pull or load $NGINX_IMAGE first"
  as_root debootstrap --variant=minbase --include=nginx-light,ca-certificates "$SUITE" "$rootfs" "$mirror" \
    >"$WORK/debootstrap-nginx.log" 2>&1 || { tail -20 "$WORK/debootstrap-nginx.log" >&2; die "debootstrap of nginx failed"; }
  as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/etc/nginx/sites-enabled/*
  as_root ln -sf /dev/stdout "$rootfs/var/log/nginx/access.log"
  as_root ln -sf /dev/stderr "$rootfs/var/log/nginx/error.log"
  as_root tar -C "$rootfs" --numeric-owner -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["nginx", "-g", "daemon off;"]' -m "$NGINX_STANDIN_NOTE ($SUITE minbase + nginx-light)" \
    - "$NGINX_IMAGE" >/dev/null
  as_root rm -rf --one-file-system "$rootfs"
  log "stand-in $NGINX_IMAGE imported in $(elapsed "$started") s"
}

compose_test() {  # -> sets COMPOSE_FACTS (JSON)
  ensure_compose
  ensure_nginx_image
  build_image mlflow deploy/docker/mlflow.Dockerfile "$MLFLOW_TAG"; local mlflow_build=$BUILD_S
  local port
  for port in "${COMPOSE_PORTS[@]}"; do
    ! "$PY" -c 'import socket, sys; s = socket.socket(); sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))) != 0)' "$port" \
      || die "port $port is taken: deploy/compose/compose.host.yaml needs ${COMPOSE_PORTS[*]} free on 127.0.0.1"
  done
  COMPOSE_PROJECT=$RUN_ID-compose
  compose_make_secrets
  compose_refuses_without_secrets
  local started up ready checks pointed
  started=$(date +%s.%N)
  log "docker-compose ${COMPOSE_FILES[*]} up -d (project $COMPOSE_PROJECT)"
  compose up -d --no-build >"$WORK/compose-up.log" 2>&1 || { tail -30 "$WORK/compose-up.log" >&2; compose logs --tail 30 >&2; die "docker-compose up failed"; }
  up=$(elapsed "$started")
  ready=$("$PY" deploy/docker/compose_smoke.py wait) || { compose ps >&2; compose logs --tail 30 >&2; die "the Compose stack did not come up"; }
  log "stack up in $up s, services ready: $ready"
  checks=$(with_secrets "$PY" deploy/docker/compose_smoke.py check exports/runs) || { compose logs --tail 30 >&2; die "Compose stack checks"; }
  # The product reads the MLflow server (not a store of its own), as its read-only user (MLFLOW_TRACKING_USERNAME
  # and _PASSWORD in its environment): the Compare page's own query, from inside its container.
  pointed=$(compose exec -T app python -c 'import os
from app.runs import search_runs
uri = os.environ["MLFLOW_TRACKING_URI"]
print(len(search_runs(uri)) if uri.startswith("http") else f"not a server: {uri}")') \
    || die "the product could not query MLflow"
  [ "$pointed" -ge "$(ls exports/runs/*.json | wc -l)" ] 2>/dev/null || die "the product sees $pointed MLflow runs"
  # Locked down as the Kubernetes manifests ask: read-only root, no capabilities, uid 10001.
  local service container
  for service in api api-2 app; do
    container=$(compose ps -q "$service")
    [ "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}} {{.Config.User}} {{json .HostConfig.CapDrop}}' "$container")" \
      = 'true 10001:10001 ["ALL"]' ] || die "$service is not read-only, uid 10001, without capabilities"
  done
  log "compose: MLflow seeded and closed to anonymous writes, nginx spread the API over both replicas behind its key, the product reads MLflow ($pointed runs)"
  compose_down
  COMPOSE_FACTS=$("$PY" -c 'import json, sys
print(json.dumps({"mlflow_build_s": float(sys.argv[1]), "up_s": float(sys.argv[2]), "ready_s": json.loads(sys.argv[3]),
                  "checks": json.loads(sys.argv[4]), "product_sees_runs": int(sys.argv[5]),
                  "refuses_to_start_without": json.loads(sys.argv[6]), "total_s": float(sys.argv[7])}))' \
    "$mlflow_build" "$up" "$ready" "$checks" "$pointed" "$COMPOSE_REFUSED" "$(elapsed "$started")")
  log "compose facts: $COMPOSE_FACTS"
}
