#!/usr/bin/env bash
# The containers for real: builds both images from docker/*.Dockerfile, checks them (non-root user,
# read-only root filesystem, --version, a missing variable named with exit 1, size), checks that a
# code-only change reuses the dependency layer (cargo-chef), then runs compose.yaml as users run it
# (`docker-compose up -d`): init bootstraps, the seed uploads its objects, and every seeded record
# must arrive in Parquet in the output bucket (read back through the emulator); one trace must join
# the mapper's `batch` span and the merger's `merge job`; `docker-compose stop` must end both
# workers with exit code 0 inside the stop grace period, and `down -v` leave nothing running.
#
# Usage: scripts/test-containers.sh            build the images from the Dockerfiles (cold: ~35 min
#                                              on 2 cores with the code-change check; a code-only
#                                              change alone: ~2 min)
#        scripts/test-containers.sh --built   the checks and the compose run on the images as tagged
#        scripts/test-containers.sh --prebuilt BIN_DIR
#                                              the same checks and compose run with images made
#                                              from binaries already built (docker/prebuilt.Dockerfile:
#                                              the runtime stage only); what CI runs on every change
#
# Needs only Debian's packages: installs docker.io and docker-compose if missing, starts dockerd if
# none runs, and makes local stand-ins for the public images with ../shared/containers/standin-images.sh
# (the Rust builder, the distroless runtime, LocalStack, Jaeger) — this machine cannot pull them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
prebuilt=""
built=""
if [ "${1:-}" = "--prebuilt" ]; then prebuilt="$(cd "${2:?--prebuilt BIN_DIR}" && pwd)"; fi
# --built: the checks and the compose run only, on flowmerge-{mapper,merger}:local as they are.
if [ "${1:-}" = "--built" ]; then built=1; fi
work="${CONTAINERS_WORK:-${TMPDIR:-/tmp}/flowmerge-containers}"
mkdir -p "$work"
project=flowmergetest
export COMPOSE_PROJECT_NAME=$project DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
fail() { echo "FAIL $*" >&2; exit 1; }
ok() { echo "ok   $*"; }

# ---- The engine, docker-compose and the stand-ins -------------------------------------------------
apt_install() {
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
        || { $SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}
command -v dockerd >/dev/null || apt_install docker.io
command -v docker-compose >/dev/null || apt_install docker-compose
if ! docker info >/dev/null 2>&1; then
    ($SUDO dockerd >"$work/dockerd.log" 2>&1 &)
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || fail "dockerd did not start: $(tail -5 "$work/dockerd.log")"
fi
shared="${FLOWMERGE_SHARED:-$root/../shared}"
bash "$shared/containers/standin-images.sh"

# ---- Images -------------------------------------------------------------------------------------------
seconds() { date +%s; }
build() { # name dockerfile context log
    local started; started=$(seconds)
    docker build -f "$2" -t "flowmerge-$1:local" "$3" >"$4" 2>&1 || fail "building $1: $(tail -20 "$4")"
    echo $(( $(seconds) - started ))
}
if [ -n "$built" ]; then
    ok "using flowmerge-mapper:local and flowmerge-merger:local as built"
elif [ -n "$prebuilt" ]; then
    for w in mapper merger; do
        ctx="$work/prebuilt-$w"; rm -rf "$ctx"; mkdir -p "$ctx/bin"
        # As docker/*.Dockerfile: the CLI (compose's init and seed) only in the merger's image.
        [ "$w" = mapper ] || install -s -m 0755 "$prebuilt/flowmerge" "$ctx/bin/flowmerge"
        install -s -m 0755 "$prebuilt/flowmerge-$w" "$ctx/bin/flowmerge-worker"
        mkdir -p "$ctx/spill"
        t=$(build "$w" "$root/docker/prebuilt.Dockerfile" "$ctx" "$work/build-$w.log")
        ok "flowmerge-$w:local from $prebuilt (runtime stage only) in ${t}s"
    done
else
    for w in mapper merger; do
        t=$(build "$w" "docker/$w.Dockerfile" . "$work/build-$w.log")
        ok "flowmerge-$w:local from docker/$w.Dockerfile in ${t}s"
    done
    docker tag flowmerge-merger:local flowmerge-merger:tree
    # A code-only change must not rebuild the dependencies: the `cargo chef cook` step comes from
    # the layer cache, and only flowmerge's crates compile again (CONTAINERS_SKIP_CODE_CHANGE=1
    # skips this check: another minute or two on 2 cores).
    if [ -z "${CONTAINERS_SKIP_CODE_CHANGE:-}" ]; then
    copy="$work/code-change"; rm -rf "$copy"; mkdir -p "$copy"
    git ls-files -z | xargs -0 cp --parents -t "$copy"
    echo "// a code-only change ($(date +%s))" >>"$copy/crates/cli/src/main.rs"
    t=$(build merger docker/merger.Dockerfile "$copy" "$work/build-merger-code-change.log")
    grep -A2 'cargo chef cook' "$work/build-merger-code-change.log" | grep -q 'Using cache' \
        || fail "a code-only change rebuilt the dependency layer (see $work/build-merger-code-change.log)"
    ok "a code-only change rebuilt the merger image in ${t}s, the dependency layer from cache"
    # Back to the image of the tree as it is (the copy only differed by the comment).
    docker tag flowmerge-merger:tree flowmerge-merger:local
    fi
fi

for w in mapper merger; do
    img="flowmerge-$w:local"
    user=$(docker image inspect -f '{{.Config.User}}' "$img")
    case "$user" in ""|0|root|0:0) fail "$img runs as root (User=${user:-unset})";; esac
    size=$(docker image inspect -f '{{.Size}}' "$img")
    version=$(docker run --rm --read-only "$img" --version) || fail "$img --version"
    [[ "$version" == "flowmerge-$w "* ]] || fail "$img --version printed: $version"
    set +e
    # The workers log JSON lines to stdout (to stderr on a terminal): the error is in either.
    err=$(docker run --rm --read-only -e AWS_REGION=us-east-1 "$img" 2>&1); code=$?
    set -e
    [ "$code" -eq 1 ] || fail "$img without configuration exited $code, not 1: $err"
    required=$([ "$w" = mapper ] && echo FLOWMERGE_RAW_QUEUE_URL || echo FLOWMERGE_MERGE_QUEUE_URL)
    grep -q "$required" <<<"$err" || fail "$img without configuration does not name $required: $err"
    ok "$img: user $user, read-only root, '$version', missing $required -> exit 1, $((size / 1024 / 1024)) MiB"
    echo "$w $size" >>"$work/sizes"
done

# The merger spills to FLOWMERGE_SPILL_DIR, a volume its user can write with a read-only root:
# a compact inside the image, under a memory limit small enough to spill, must succeed.
spill_in="$work/spill-in"; rm -rf "$spill_in"; mkdir -p "$spill_in"
docker run --rm -u "$(id -u)" -v "$spill_in:/in" --entrypoint /usr/local/bin/flowmerge \
    flowmerge-merger:local gen /in --accounts 2 --minutes 5 --records-per-file 3000 >/dev/null \
    || fail "gen in the merger image"
summary=$(docker run --rm --read-only -v "$spill_in:/in:ro" --tmpfs /out:uid=65532 \
    --entrypoint /usr/local/bin/flowmerge flowmerge-merger:local \
    compact /in /out --memory-limit 2MiB --concurrency 1 --json 2>&1) \
    || fail "compact with spilling in the merger image (read-only root): $summary"
grep -q '"records_in": 90000' <<<"$summary" || fail "spilling compact in the image: $summary"
ok "flowmerge-merger:local spills to its volume with a read-only root (90,000 records under 2 MiB)"
rm -rf "$spill_in"

# ---- compose.yaml, as users run it (no override file: the stand-ins answer as the real images do) --
cleanup() { docker-compose down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
docker-compose up -d --no-build >"$work/compose-up.log" 2>&1 || fail "docker-compose up: $(tail -20 "$work/compose-up.log")"
seed=$(docker-compose ps -q seed)
[ "$(docker wait "$seed")" = 0 ] || fail "seed failed: $(docker-compose logs seed | tail -20)"
ok "init bootstrapped and seed uploaded its objects"

venv="${FLOWMERGE_TEST_VENV:-$HOME/.cache/flowmerge/venv-test}"
"$venv/bin/python" - "$work" <<'PY' || { docker-compose logs mapper merger | tail -60; fail "records did not all arrive"; }
import io, json, os, sys, time
import boto3, duckdb
work = sys.argv[1]
s3 = boto3.client("s3", endpoint_url="http://localhost:4566", region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
def count(bucket, prefix, suffix):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(suffix)]
    return keys
raw = count("flowmerge-raw", "", ".log.gz")
expected = 0
for k in raw:
    body = s3.get_object(Bucket="flowmerge-raw", Key=k)["Body"].read()
    import gzip
    lines = gzip.decompress(body).decode().splitlines()
    expected += sum(1 for l in lines[1:] if l.strip())
deadline = time.time() + 600
while True:
    files = count("flowmerge-output", "flows/vpcflowlogs/", ".parquet")
    got = 0
    if files:
        d = os.path.join(work, "parquet"); os.makedirs(d, exist_ok=True)
        paths = []
        for i, k in enumerate(files):
            p = os.path.join(d, f"{i}.parquet"); s3.download_file("flowmerge-output", k, p); paths.append(p)
        got = duckdb.sql(f"SELECT sum(merged_records) FROM read_parquet({paths!r})").fetchall()[0][0] or 0
    if got == expected:
        print(f"ok   {len(raw)} objects, {expected} records uploaded: {got} merged records in {len(files)} Parquet files (read with DuckDB)")
        break
    if got > expected:
        sys.exit(f"more records out ({got}) than in ({expected})")
    if time.time() > deadline:
        sys.exit(f"only {got} of {expected} records after 10 minutes")
    time.sleep(3)
PY

# The receiver keeps the spans it got; one trace must hold the mapper's batch and the merger's job.
# The workers export spans in batches every few seconds: look again until they are in, or 60 s.
jaeger=$(docker-compose ps -q jaeger)
joined() {
docker cp "$jaeger:/spans/spans.jsonl" "$work/spans.jsonl" >/dev/null
"$venv/bin/python" - "$work/spans.jsonl" <<'PY'
import json, sys
traces = {}
for line in open(sys.argv[1]):
    s = json.loads(line)
    traces.setdefault(s.get("trace_id") or s.get("traceId"), set()).add(s.get("name"))
sys.exit(0 if any({"batch", "merge job"} <= names for names in traces.values()) else 1)
PY
}
for _ in $(seq 30); do joined && break; sleep 2; done
"$venv/bin/python" - "$work/spans.jsonl" <<'PY' || fail "no trace joins the mapper's batch span and the merger's merge job"
import json, sys
traces = {}
for line in open(sys.argv[1]):
    s = json.loads(line)
    traces.setdefault(s.get("trace_id") or s.get("traceId"), set()).add(s.get("name"))
joined = [t for t, names in traces.items() if {"batch", "merge job"} <= names]
print(f"ok   {sum(1 for _ in open(sys.argv[1]))} spans, {len(joined)} traces join a mapper batch and a merger job")
sys.exit(0 if joined else 1)
PY

started=$(seconds)
docker-compose stop >"$work/compose-stop.log" 2>&1
took=$(( $(seconds) - started ))
for w in mapper merger; do
    code=$(docker inspect -f '{{.State.ExitCode}}' "$(docker-compose ps -q $w)")
    [ "$code" = 0 ] || fail "$w exited $code on docker-compose stop: $(docker-compose logs $w | tail -20)"
done
[ "$took" -lt 30 ] || fail "docker-compose stop took ${took}s (stop grace period 30s)"
ok "docker-compose stop: mapper and merger exited 0 in ${took}s"
docker-compose down -v --remove-orphans >/dev/null 2>&1
[ -z "$(docker ps -q --filter "label=com.docker.compose.project=$project")" ] || fail "containers left running after down -v"
trap - EXIT
ok "docker-compose down -v: nothing left running"
