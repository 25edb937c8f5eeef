#!/usr/bin/env bash
# `make docker-test`: build deploy/docker/Dockerfile.cpu and Dockerfile.full from this checkout (context: the
# repository root), run both, prove they serve.
#
#  1. A Docker engine: the running one, else docker.io from apt and a dockerd started here (no iptables, no
#     bridge; overlay2 storage where a container runs on it, else vfs; stopped at the end, by pid). No engine
#     can start (no root, no privileges): the script prints a SKIPPED line and exits 0 -- or 1 when
#     DOCKER_TEST_REQUIRED=1 (CI), unless DOCKER_TEST_ALLOW_SKIP=1. Other failures exit 1.
#  2. The base image (BASE_IMAGE, default python:3.11-slim): used as found; when missing (no registry is
#     reachable here), a stand-in is made with debootstrap (Debian bookworm minbase with python3,
#     python3-venv, ca-certificates, from the mirror in this machine's apt sources) and `docker import`ed
#     under the same name.
#  3. wheelhouse/ (git-ignored): the manylinux wheels of requirements/api.txt, app.txt and mlflow-server.txt for CPython 3.11,
#     from `pip download`; kept for the next run. Its presence makes the Dockerfiles install with --no-index,
#     so both images build with --network=none.
#  4. Each container runs with --network=host on a free port: the time from `docker run` to healthy, the
#     lean API's labels on clear tweets and its 4xx on bad input, the product's UI, /api and a feedback row
#     in its volume; non-root; no torch/streamlit/mlflow in the lean image; sizes above the base.
#  5. The Compose stack (deploy/docker/compose.sh): deploy/compose/compose.yaml through compose.host.yaml with
#     Debian's docker-compose 1.29 (MLflow seeded from exports/runs, the lean API twice behind nginx, the product
#     on MLflow), each service checked, then taken down. DOCKER_TEST_COMPOSE=0 leaves it out.
#  6. results/docker.json and results/docker.md; the containers and the volume are removed.
#
# `bash deploy/docker/test.sh wheelhouse` only fills wheelhouse/ (no Docker needed), for an air-gapped build elsewhere.
# Environment: BASE_IMAGE, LEAN_TAG, FULL_TAG, PYTHON (host python with pip), DOCKERD_STORAGE_DRIVER, the targets
# LEAN_MAX_MB (200), FULL_MAX_MB (700), LEAN_HEALTHY_MAX_S (10).
set -euo pipefail
cd "$(dirname "$0")/../.."  # the repository root: the build context, and every path below is relative to it
ROOT=$PWD

BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
LEAN_TAG=${LEAN_TAG:-tweet-sentiment-api:test}
FULL_TAG=${FULL_TAG:-tweet-sentiment-app:test}
PY=${PYTHON:-python3}
LEAN_MAX_MB=${LEAN_MAX_MB:-200}
FULL_MAX_MB=${FULL_MAX_MB:-700}
LEAN_HEALTHY_MAX_S=${LEAN_HEALTHY_MAX_S:-10}
SUITE=bookworm
PYTHON_TAG=3.11
WHEELHOUSE=$ROOT/wheelhouse
RESULTS=$ROOT/results
STANDIN_NOTE="stand-in made by deploy/docker/test.sh with debootstrap"  # the image comment (a label would be inherited)
LEGACY_STANDIN_NOTE="stand-in made by docker/test.sh with debootstrap"  # a stand-in imported before deploy/ existed

WORK=$(mktemp -d "${TMPDIR:-/tmp}/docker-test.XXXXXX")
RUN_ID=tweet-sentiment-test-$$
DOCKERD_PID=""
CONTAINERS=()
VOLUME=""
STARTED=$(date +%s)

log() { printf '[docker-test %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
skip() {
  echo "SKIPPED: make docker-test: $* -- Docker cannot run on this machine, so no image was built or tested."
  # CI sets DOCKER_TEST_REQUIRED=1 on machines that can run Docker: a skip there would hide that nothing was tested.
  if [ "${DOCKER_TEST_REQUIRED:-0}" = 1 ] && [ "${DOCKER_TEST_ALLOW_SKIP:-0}" != 1 ]; then
    echo "FAILED: make docker-test was required (DOCKER_TEST_REQUIRED=1) and skipped; set DOCKER_TEST_ALLOW_SKIP=1 to accept it" >&2
    exit 1
  fi
  exit 0
}
elapsed() { "$PY" -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$1"; }

cleanup() {
  local status=$?
  set +e
  for container in ${CONTAINERS[@]+"${CONTAINERS[@]}"}; do docker rm -f "$container" >/dev/null 2>&1; done
  compose_down
  if [ -n "$VOLUME" ]; then docker volume rm -f "$VOLUME" >/dev/null 2>&1; fi
  stop_dockerd
  # debootstrap may leave /proc or /sys mounted in the rootfs when it fails: never delete through a mount.
  if [ -d "$WORK" ]; then
    awk -v work="$WORK" 'index($2, work) == 1 {print $2}' /proc/mounts 2>/dev/null | sort -r | xargs -r umount -l
    rm -rf --one-file-system "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi; }

apt_install() {
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >"$WORK/apt.log" 2>&1 \
    || { as_root apt-get update -q >>"$WORK/apt.log" 2>&1 \
         && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >>"$WORK/apt.log" 2>&1; }
}

# --- 1. engine -----------------------------------------------------------------------------------------------
ensure_engine() {
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    log "using the running Docker engine"
    return
  fi
  [ "$(id -u)" -eq 0 ] || as_root true || skip "no Docker engine runs and this user cannot start one (not root, no sudo)"
  if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    command -v apt-get >/dev/null || skip "no Docker engine and no apt-get to install docker.io"
    apt_install docker.io || { tail -5 "$WORK/apt.log" >&2; skip "docker.io could not be installed"; }
    if docker info >/dev/null 2>&1; then
      log "using the Docker engine that the docker.io package started"
      return
    fi
  fi
  local driver=${DOCKERD_STORAGE_DRIVER:-}
  if [ -z "$driver" ]; then
    # overlay2 where the kernel has overlayfs (a commit is then a cheap layer; with vfs every instruction of
    # a build and every container start copies the whole image), else vfs, which works everywhere.
    if grep -qw overlay /proc/filesystems 2>/dev/null && start_dockerd overlay2; then return; fi
    driver=vfs
  fi
  start_dockerd "$driver" && return
  tail -15 "$WORK/dockerd.log" >&2
  skip "dockerd could not start (see its last log lines above)"
}

start_dockerd() {  # DRIVER -> 0 once a dockerd started here answers with that storage driver
  local driver=$1 flags=(--storage-driver="$1" --iptables=false --ip6tables=false --bridge=none)
  log "starting dockerd ($driver storage, no iptables, no bridge)"
  # Started directly (not through a function) so that $! is dockerd itself, or the sudo that relays signals.
  if [ "$(id -u)" -eq 0 ]; then dockerd "${flags[@]}" >>"$WORK/dockerd.log" 2>&1 &
  else sudo -n dockerd "${flags[@]}" >>"$WORK/dockerd.log" 2>&1 &
  fi
  DOCKERD_PID=$!
  for _ in $(seq 1 120); do
    if docker info >/dev/null 2>&1; then
      if [ "$(docker info -f '{{.Driver}}')" = "$driver" ]; then
        log "dockerd is up (pid $DOCKERD_PID, $driver)"
        return 0
      fi
      break
    fi
    kill -0 "$DOCKERD_PID" 2>/dev/null || { DOCKERD_PID=""; log "dockerd ($driver) exited"; return 1; }
    sleep 0.5
  done
  log "dockerd ($driver) did not come up"
  stop_dockerd
  return 1
}

stop_dockerd() {
  [ -n "$DOCKERD_PID" ] || return 0
  log "stopping the dockerd started by this test (pid $DOCKERD_PID)"
  kill "$DOCKERD_PID" 2>/dev/null
  for _ in $(seq 1 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
  if kill -0 "$DOCKERD_PID" 2>/dev/null; then kill -9 "$DOCKERD_PID" 2>/dev/null; fi
  DOCKERD_PID=""
}

# --- 2. base image -------------------------------------------------------------------------------------------
debian_mirror() {
  # The main Debian archive of this machine's apt sources (one-line or deb822 format); prints its URI.
  "$PY" - "$SUITE" <<'EOF'
import glob, sys
suite = sys.argv[1]
entries = []  # (uris, suites)
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for paragraph in open(path, encoding="utf-8").read().split("\n\n"):
        fields = {}
        for line in paragraph.splitlines():
            if line and not line.startswith(("#", " ", "\t")) and ":" in line:
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"])[0].lower() != "no":
            entries.append((fields.get("uris", []), fields.get("suites", [])))
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        continue
    for line in lines:
        words = [w for w in line.split("#", 1)[0].split() if not w.startswith("[") and not w.endswith("]")]
        if len(words) >= 3 and words[0] == "deb":
            entries.append(([words[1]], [words[2]]))
def main_archive(uri, suites):
    return "security" not in uri and not any(s.endswith("-security") for s in suites)
ranked = [u for uris, suites in entries if suite in suites for u in uris if main_archive(u, suites)]
ranked += [u for uris, suites in entries for u in uris if main_archive(u, suites) and u.rstrip("/").endswith("/debian")]
if not ranked:
    sys.exit(1)
print(ranked[0])
EOF
}

ensure_base_image() {
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE is present"
    return
  fi
  log "$BASE_IMAGE is missing and no registry is assumed: building a Debian $SUITE stand-in with debootstrap"
  command -v debootstrap >/dev/null || apt_install debootstrap || { tail -5 "$WORK/apt.log" >&2; die "cannot install debootstrap"; }
  local mirror
  mirror=$(debian_mirror) || die "no Debian archive in this machine's apt sources: pull or load $BASE_IMAGE first"
  local started rootfs=$WORK/rootfs
  started=$(date +%s.%N)
  as_root debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$rootfs" "$mirror" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap $SUITE from $mirror failed"; }
  as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  as_root tar -C "$rootfs" --numeric-owner -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'ENV LANG=C.UTF-8' \
    -c 'CMD ["python3"]' -m "$STANDIN_NOTE ($SUITE minbase + python3, python3-venv, ca-certificates)" \
    - "$BASE_IMAGE" >/dev/null
  as_root rm -rf --one-file-system "$rootfs"
  log "stand-in $BASE_IMAGE imported in $(elapsed "$started") s (debootstrap from $mirror)"
}

# --- 3. wheelhouse -------------------------------------------------------------------------------------------
ensure_wheelhouse() {
  local arch stamp platforms=()
  arch=$(uname -m)
  stamp="$(cat requirements/api.txt requirements/app.txt requirements/mlflow-server.txt | sha256sum | cut -c1-16) cp${PYTHON_TAG/./} $arch"
  if [ -f "$WHEELHOUSE/.complete" ] && [ "$(cat "$WHEELHOUSE/.complete")" = "$stamp" ]; then
    log "wheelhouse/ is complete for these lock files: reused ($(du -sh "$WHEELHOUSE" | cut -f1))"
    return
  fi
  "$PY" -m pip --version >/dev/null 2>&1 || die "$PY has no pip: set PYTHON to a python with pip"
  # pip expands no manylinux_2_X platform to older ones: list them all (glibc 2.36 is Debian bookworm's).
  for minor in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${minor}_${arch}"); done
  platforms+=(--platform "manylinux2014_${arch}")
  [ "$arch" = x86_64 ] && platforms+=(--platform manylinux2010_x86_64 --platform manylinux1_x86_64)
  log "pip download: the wheels of requirements/api.txt, app.txt and mlflow-server.txt for CPython $PYTHON_TAG $arch into wheelhouse/"
  local started
  started=$(date +%s.%N)
  rm -f "$WHEELHOUSE/.complete"
  "$PY" -m pip download --disable-pip-version-check --quiet --no-deps --only-binary=:all: \
    --implementation cp --python-version "$PYTHON_TAG" --abi "cp${PYTHON_TAG/./}" "${platforms[@]}" \
    --dest "$WHEELHOUSE" -r requirements/api.txt -r requirements/app.txt -r requirements/mlflow-server.txt >"$WORK/pip.log" 2>&1 \
    || { grep -v '^WARNING: Location' "$WORK/pip.log" | tail -20 >&2; die "pip download failed"; }
  echo "$stamp" >"$WHEELHOUSE/.complete"
  log "wheelhouse/ ready in $(elapsed "$started") s ($(du -sh "$WHEELHOUSE" | cut -f1))"
}

# --- 4. build, run, check ------------------------------------------------------------------------------------
model_labels() {
  # name and version of the image's default model, chosen as the build's `select` does: the engine's one lookup
  # (sentiment.champion.resolve_champion: the manifest's champion when the EXPORTS build argument keeps it, else
  # the champion rule among what it keeps). That module imports only the standard library: docker-test runs on a
  # bare python3.
  PYTHONPATH="$ROOT" "$PY" - <<'EOF'
import json, pathlib, re
from sentiment.champion import resolve_champion
chosen = re.search(r'^ARG EXPORTS="([^"]*)"', pathlib.Path("deploy/docker/Dockerfile.cpu").read_text(), re.M).group(1).split()
metas = {m["name"]: m for m in (json.loads(p.read_text()) for p in sorted(pathlib.Path("exports").glob("*/metadata.json")))
         if m["name"] in chosen}
manifest = pathlib.Path("exports/manifest.json")
champion = resolve_champion(metas, json.loads(manifest.read_text())["champion"] if manifest.exists() else None)
print(champion, metas[champion]["version"]) if champion else print("none none")
EOF
}

build_image() {  # name dockerfile tag -> sets BUILD_S
  local name=$1 dockerfile=$2 tag=$3 started old_id new_id
  old_id=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
  started=$(date +%s.%N)
  log "docker build --network=none -f $dockerfile -t $tag"
  docker build --network=none --file "$dockerfile" --tag "$tag" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg VERSION="$VERSION" --build-arg VCS_REF="$VCS_REF" \
    --build-arg SOURCE="$SOURCE" --build-arg CREATED="$CREATED" \
    --build-arg MODEL_NAME="$MODEL_NAME" --build-arg MODEL_VERSION="$MODEL_VERSION" . >"$WORK/build-$name.log" 2>&1 \
    || { tail -40 "$WORK/build-$name.log" >&2; die "docker build of $dockerfile failed"; }
  BUILD_S=$(elapsed "$started")
  new_id=$(docker image inspect -f '{{.Id}}' "$tag")
  # The image this tag pointed to before: removed, so that reruns do not pile up copies (vfs stores each layer whole).
  if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then docker rmi "$old_id" >/dev/null 2>&1 || true; fi
  log "built $tag in $BUILD_S s"
}

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
size_mb() { docker image inspect -f '{{.Size}}' "$1" | "$PY" -c 'import sys; print(round(int(sys.stdin.read()) / 1e6, 1))'; }
above_base() { "$PY" -c 'import sys; print(round(float(sys.argv[1]) - float(sys.argv[2]), 1))' "$1" "$2"; }
json_get() {  # JSON KEY... -> the value (strings as such, anything else as JSON)
  "$PY" -c 'import json, sys
value = json.loads(sys.argv[1])
for key in sys.argv[2:]:
    value = value[key]
print(value if isinstance(value, str) else json.dumps(value))' "$@"
}
container_uid() { docker exec "$1" python -c 'import os; print(os.getuid())'; }

start_container() {  # name port health_path ready_path docker-run-args... -> sets STARTUP (JSON)
  local name=$1 port=$2 health=$3 ready=$4 t0 t1
  shift 4
  CONTAINERS+=("$name")
  # `docker run -d`, as its two halves: create (the storage driver prepares the file system; vfs copies the
  # whole image) and start. The times count from before the create.
  t0=$(date +%s.%N)
  docker create --name "$name" --network=host -e UVICORN_HOST=127.0.0.1 -e UVICORN_PORT="$port" "$@" >/dev/null
  t1=$(date +%s.%N)
  docker start "$name" >/dev/null
  STARTUP=$("$PY" deploy/docker/smoke.py startup "$name" "$t0" "http://127.0.0.1:$port$health" \
            "http://127.0.0.1:$port$ready" --created "$t1") || { docker logs --tail 40 "$name" >&2; die "$name did not start"; }
  log "$name: $STARTUP"
}

main() {
  case "${1:-all}" in
    all) ;;
    wheelhouse) ensure_wheelhouse; return ;;  # only fill wheelhouse/ (for an air-gapped build elsewhere)
    *) die "usage: bash deploy/docker/test.sh [wheelhouse]" ;;
  esac
  ensure_engine
  local engine driver
  engine=$(docker version -f '{{.Server.Version}}')
  driver=$(docker info -f '{{.Driver}}')
  ensure_base_image
  if ! docker run --rm --network=none "$BASE_IMAGE" python3 -c pass 2>"$WORK/probe.log"; then
    # overlayfs can mount at daemon start yet fail for containers (nested overlays): fall back to vfs.
    [ -n "$DOCKERD_PID" ] && [ "$driver" = overlay2 ] || { cat "$WORK/probe.log" >&2; die "cannot run $BASE_IMAGE"; }
    log "a container does not run with overlay2 here ($(tail -1 "$WORK/probe.log")): restarting dockerd with vfs"
    stop_dockerd
    start_dockerd vfs || skip "dockerd could not start with vfs after overlay2 failed"
    driver=vfs
    ensure_base_image
    docker run --rm --network=none "$BASE_IMAGE" python3 -c pass || die "cannot run a container of $BASE_IMAGE"
  fi
  ensure_wheelhouse

  VERSION=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
  VCS_REF=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  SOURCE=$(git remote get-url origin 2>/dev/null | sed -E 's#://[^/@]*@#://#' || true)
  CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  read -r MODEL_NAME MODEL_VERSION < <(model_labels)
  [ "$MODEL_NAME" != none ] || die "exports/ holds no model (exports/<model>/metadata.json): run make export first"

  build_image lean deploy/docker/Dockerfile.cpu "$LEAN_TAG"; local lean_build=$BUILD_S
  build_image full deploy/docker/Dockerfile.full "$FULL_TAG"; local full_build=$BUILD_S

  local base_mb lean_mb full_mb base_kind
  base_mb=$(size_mb "$BASE_IMAGE")
  lean_mb=$(above_base "$(size_mb "$LEAN_TAG")" "$base_mb")
  full_mb=$(above_base "$(size_mb "$FULL_TAG")" "$base_mb")
  base_kind=$(docker image inspect -f '{{.Comment}}' "$BASE_IMAGE" 2>/dev/null || true)
  case "$base_kind" in "$STANDIN_NOTE"*|"$LEGACY_STANDIN_NOTE"*) ;; *) base_kind="" ;; esac
  log "sizes above the base ($base_mb MB): lean $lean_mb MB, full $full_mb MB"

  # The lean image holds none of the training or product stacks; no image holds the fp32 export.
  local absent
  absent=$(docker run --rm --network=none --entrypoint python "$LEAN_TAG" -c '
import importlib.metadata as md, importlib.util as u, json, sys
heavy = ["torch", "transformers", "mlflow", "streamlit", "sklearn", "pandas", "scipy"]
dists = {d.metadata["Name"].lower() for d in md.distributions()}
found = [m for m in heavy if u.find_spec(m)] + sorted(dists & {"torch", "transformers", "mlflow", "mlflow-skinny", "streamlit"})
print(json.dumps(heavy)) if not found else sys.exit(f"found in the lean image: {found}")') \
    || die "the lean image contains packages it must not"
  for tag in "$LEAN_TAG" "$FULL_TAG"; do
    docker run --rm --network=none --entrypoint python "$tag" -c '
import glob, sys
found = glob.glob("/app/exports/**/*.fp32.onnx", recursive=True)
sys.exit(f"fp32 exports in the image: {found}" if found else 0)' || die "$tag contains an fp32 export"
  done

  # Lean API.
  local port lean_name=$RUN_ID-lean lean_startup lean_checks lean_uid
  port=$(free_port)
  start_container "$lean_name" "$port" /healthz /readyz "$LEAN_TAG"
  lean_startup=$STARTUP
  lean_checks=$("$PY" deploy/docker/smoke.py lean "http://127.0.0.1:$port") || { docker logs --tail 40 "$lean_name" >&2; die "lean API checks"; }
  lean_uid=$(container_uid "$lean_name")
  [ "$lean_uid" != 0 ] || die "the lean container runs as root"
  log "lean API: labels, batch and 4xx checks passed; uid $lean_uid"
  docker rm -f "$lean_name" >/dev/null

  # Full product, with its data volume.
  local full_name=$RUN_ID-full full_startup full_checks full_uid prediction feedback feedback_id stored
  VOLUME=$RUN_ID-data
  docker volume create "$VOLUME" >/dev/null
  port=$(free_port)
  start_container "$full_name" "$port" /_stcore/health /api/readyz -v "$VOLUME:/data" "$FULL_TAG"
  full_startup=$STARTUP
  full_checks=$("$PY" deploy/docker/smoke.py full "http://127.0.0.1:$port") || { docker logs --tail 40 "$full_name" >&2; die "full image checks"; }
  full_uid=$(container_uid "$full_name")
  [ "$full_uid" != 0 ] || die "the full container runs as root"
  # A thumbs-up on the prediction /api/v1/predict just gave, written as the Predict page writes it
  # (sentiment.feedback.FeedbackStore.record_verdict, at the FEEDBACK_DB of the container's settings).
  prediction=$(json_get "$full_checks" prediction)
  feedback=$(docker exec -i "$full_name" python - "$prediction" <<'EOF'
import json, sys, uuid
from sentiment.feedback import FeedbackStore
from app.settings import get_settings
p = json.loads(sys.argv[1])
store = FeedbackStore(get_settings().feedback_db)
row = store.record_verdict(feedback_id=str(uuid.uuid4()), text=p["text"], model_name=p["model"],
                           model_version=p["version"], predicted_label=p["label"], confidence=p["confidence"],
                           verdict="up")
print(json.dumps({"id": row["id"], "db": str(store.path)}))
EOF
  ) || die "could not record a feedback row in the full container"
  feedback_id=$(json_get "$feedback" id)
  docker rm -f "$full_name" >/dev/null
  # Read back by a new container from the volume alone: the row outlived the container that wrote it.
  stored=$(docker run --rm --network=none -v "$VOLUME:/data" --entrypoint python "$FULL_TAG" -c '
import os, sqlite3, sys
db = sqlite3.connect(os.environ["FEEDBACK_DB"])
print(db.execute("SELECT COUNT(*) FROM feedback WHERE id = ? AND verdict = ?", (sys.argv[1], "up")).fetchone()[0])' "$feedback_id") \
    || die "could not read the feedback database from the volume"
  [ "$stored" = 1 ] || die "feedback row $feedback_id is not in the volume"
  log "full product: UI, /_stcore/health, /api/v1/predict passed; feedback row $feedback_id is in volume $VOLUME; uid $full_uid"

  COMPOSE_FACTS=null
  if [ "${DOCKER_TEST_COMPOSE:-1}" != 0 ]; then compose_test; fi

  # Results.
  export FACTS_ENGINE="$engine" FACTS_DRIVER="$driver" FACTS_BASE_MB="$base_mb" \
    FACTS_BASE_KIND="${base_kind:-as found in the engine}" FACTS_LEAN_MB="$lean_mb" FACTS_FULL_MB="$full_mb" \
    FACTS_LEAN_BUILD="$lean_build" FACTS_FULL_BUILD="$full_build" FACTS_LEAN_STARTUP="$lean_startup" \
    FACTS_FULL_STARTUP="$full_startup" FACTS_LEAN_CHECKS="$lean_checks" FACTS_ABSENT="$absent" \
    FACTS_LEAN_UID="$lean_uid" FACTS_FULL_UID="$full_uid" FACTS_FEEDBACK_ID="$feedback_id" \
    FACTS_BASE_IMAGE="$BASE_IMAGE" FACTS_LEAN_TAG="$LEAN_TAG" FACTS_FULL_TAG="$FULL_TAG" FACTS_COMMIT="$VCS_REF" \
    FACTS_MODEL="$MODEL_NAME $MODEL_VERSION" FACTS_STARTED="$STARTED" FACTS_COMPOSE="$COMPOSE_FACTS" \
    FACTS_LEAN_LABELS="$(docker image inspect -f '{{json .Config.Labels}}' "$LEAN_TAG")" \
    FACTS_FULL_LABELS="$(docker image inspect -f '{{json .Config.Labels}}' "$FULL_TAG")" \
    FACTS_TARGETS="$LEAN_MAX_MB $FULL_MAX_MB $LEAN_HEALTHY_MAX_S"
  "$PY" - "$WORK/facts.json" <<'EOF'
import json, os, sys, time
e = os.environ
lean_mb, full_mb, healthy_s = (float(x) for x in e["FACTS_TARGETS"].split())
model, model_version = e["FACTS_MODEL"].split()
facts = {
    "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": e["FACTS_COMMIT"],
    "engine": e["FACTS_ENGINE"], "storage_driver": e["FACTS_DRIVER"], "cpus": os.cpu_count(),
    "base_image": e["FACTS_BASE_IMAGE"], "base_kind": e["FACTS_BASE_KIND"], "base_size_mb": float(e["FACTS_BASE_MB"]),
    "targets": {"lean_mb": lean_mb, "full_mb": full_mb, "lean_healthy_s": healthy_s},
    "lean": {"tag": e["FACTS_LEAN_TAG"], "dockerfile": "deploy/docker/Dockerfile.cpu", "size_above_base_mb": float(e["FACTS_LEAN_MB"]),
             "build_s": float(e["FACTS_LEAN_BUILD"]), **json.loads(e["FACTS_LEAN_STARTUP"]),
             "checks": json.loads(e["FACTS_LEAN_CHECKS"]), "absent_packages": json.loads(e["FACTS_ABSENT"]),
             "uid": int(e["FACTS_LEAN_UID"]), "model_label": {"name": model, "version": model_version},
             "labels": json.loads(e["FACTS_LEAN_LABELS"])},
    "full": {"tag": e["FACTS_FULL_TAG"], "dockerfile": "deploy/docker/Dockerfile.full", "size_above_base_mb": float(e["FACTS_FULL_MB"]),
             "build_s": float(e["FACTS_FULL_BUILD"]), **json.loads(e["FACTS_FULL_STARTUP"]),
             "uid": int(e["FACTS_FULL_UID"]), "feedback_id": e["FACTS_FEEDBACK_ID"],
             "labels": json.loads(e["FACTS_FULL_LABELS"])},
    "compose": json.loads(e["FACTS_COMPOSE"]),
    "total_s": round(time.time() - float(e["FACTS_STARTED"]), 1),
}
open(sys.argv[1], "w").write(json.dumps(facts))
EOF
  "$PY" deploy/docker/smoke.py report "$WORK/facts.json" "$RESULTS"
  log "wrote results/docker.json and results/docker.md"

  local failures=()
  "$PY" -c 'import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))' "$lean_mb" "$LEAN_MAX_MB" \
    || failures+=("lean image is $lean_mb MB above its base (target <= $LEAN_MAX_MB MB)")
  "$PY" -c 'import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))' "$full_mb" "$FULL_MAX_MB" \
    || failures+=("full image is $full_mb MB above its base (target <= $FULL_MAX_MB MB)")
  local lean_healthy measured=run_to_healthy_s
  if [ "$driver" = vfs ]; then
    # vfs copies the whole image when the container is created: a cost of this test engine, not of the image.
    measured=start_to_healthy_s
    log "vfs storage: the start-time target applies from 'docker start' ($(json_get "$lean_startup" create_s) s of create excluded)"
  fi
  lean_healthy=$(json_get "$lean_startup" "$measured")
  "$PY" -c 'import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))' "$lean_healthy" "$LEAN_HEALTHY_MAX_S" \
    || failures+=("lean container healthy $lean_healthy s after docker ${measured%%_*} (target <= $LEAN_HEALTHY_MAX_S s)")
  [ "${#failures[@]}" -eq 0 ] || die "$(printf '%s; ' "${failures[@]}")"
  log "PASSED in $(( $(date +%s) - STARTED )) s: lean +$lean_mb MB, healthy in $lean_healthy s; full +$full_mb MB"
}

# shellcheck source=deploy/docker/compose.sh
source "$ROOT/deploy/docker/compose.sh"

main "$@"
