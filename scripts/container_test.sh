#!/usr/bin/env bash
# Builds the image from the Dockerfile with podman, as `docker build .` would, runs `soundalike serve` in it on
# the fixtures' index (mounted read-only, as the image's own user), and checks it over HTTP: /healthz, an id
# query equal to the CLI's `recommend --json`, an upload (503 naming the weights without them; with the test
# weights, the CLI's `recommend --audio` answer), the HEALTHCHECK, and `podman stop`'s SIGTERM exiting 0 quickly.
#
# Not in .ci/run: the image's first build compiles the whole crate (13 minutes on two cores; the whole first run,
# base images included, 17 minutes; then 10 to 16 s). Needs root (it installs podman, buildah, runc and
# mmdebstrap with apt-get when missing) and a Debian bookworm host. With no registry at hand it makes the two
# images the Dockerfile names from Debian's packages: debian:bookworm-slim with mmdebstrap, and rust:1.95-bookworm
# as that plus gcc and this machine's Rust toolchain.
#
# Environment: SOUNDALIKE_IMAGE (default localhost/soundalike:test) the tag to build; SOUNDALIKE_TEST_WEIGHTS a
# VGGish weights file to upload with (default tmp/formula.safetensors in cargo's target directory, the formula
# weights `cargo test` writes; without it the upload is checked only as the 503 of a server with no weights);
# KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
exec < /dev/null

IMAGE=${SOUNDALIKE_IMAGE:-localhost/soundalike:test}
WEIGHTS=${SOUNDALIKE_TEST_WEIGHTS:-$(python3 scripts/cargo_target.py)/tmp/formula.safetensors}
BASE=docker.io/library/debian:bookworm-slim
RUST=$(awk 'toupper($1) == "FROM" && toupper($3) == "AS" && $4 == "build" { print $2 }' Dockerfile)
# crun fails on this kind of machine; runc works.
podman() { command podman --runtime runc --cgroup-manager cgroupfs "$@"; }

began=$SECONDS
say() { printf '== %s\n' "$*"; }
ok() { printf 'ok    %s\n' "$*"; }
fail() {
    printf 'FAIL  %s\n' "$*" >&2
    exit 1
}

WORK=$(mktemp -d /tmp/soundalike-container.XXXXXX)
CONTAINERS=()
cleanup() {
    for c in "${CONTAINERS[@]}"; do command podman rm -f -t 0 "$c" > /dev/null 2>&1 || true; done
    if [ "${KEEP:-}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

say "tools"
[ "$(id -u)" = 0 ] || fail "run as root: it installs podman and makes images from Debian's packages"
if ! command -v podman > /dev/null || ! command -v runc > /dev/null || ! command -v mmdebstrap > /dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc mmdebstrap uidmap curl > /dev/null
fi
# Measured here: the default ulimits and the systemd cgroup manager make every container fail to start.
conf=/etc/containers/containers.conf
if [ ! -e "$conf" ]; then
    printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n' > "$conf"
    ok "wrote $conf (default_ulimits = [], cgroupfs, runc)"
elif ! grep -q '^ *default_ulimits *= *\[ *\]' "$conf"; then
    fail "$conf exists without 'default_ulimits = []' in [containers]; add it (containers fail to start here otherwise)"
fi
command podman --version

say "base images (what a registry would serve)"
if ! podman image exists "$BASE"; then
    t=$SECONDS
    mmdebstrap --quiet --variant=minbase --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        bookworm "$WORK/base.tar"
    podman import --quiet --change 'CMD ["bash"]' "$WORK/base.tar" "$BASE" > /dev/null
    rm "$WORK/base.tar"
    ok "$BASE made with mmdebstrap in $((SECONDS - t)) s"
else
    ok "$BASE present"
fi
if ! podman image exists "$RUST"; then
    t=$SECONDS
    sysroot=$(rustc --print sysroot)
    rustc --version | grep -q ' 1\.9[5-9]\| 1\.[1-9][0-9][0-9]' || fail "this machine's Rust is older than 1.95"
    toolchain=/usr/local/rustup/toolchains/local
    mmdebstrap --quiet --variant=minbase --include=gcc,libc6-dev,make,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --customize-hook="mkdir -p \"\$1$toolchain\" \"\$1/usr/local/cargo/bin\" \
            && cp -a '$sysroot/bin' '$sysroot/lib' \"\$1$toolchain/\" \
            && for b in cargo rustc rustdoc; do ln -s $toolchain/bin/\$b \"\$1/usr/local/cargo/bin/\$b\"; done" \
        bookworm "$WORK/rust.tar"
    podman import --quiet --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' "$WORK/rust.tar" "$RUST" > /dev/null
    rm "$WORK/rust.tar"
    ok "$RUST made from $BASE's packages, gcc and $(rustc --version) in $((SECONDS - t)) s"
else
    ok "$RUST present"
fi

say "build $IMAGE from the Dockerfile"
t=$SECONDS
# --format docker: the OCI format has no HEALTHCHECK. The crates come from crates.io, or from this machine's
# cargo cache when it has one (a cache only: the build is the Dockerfile's).
cache=()
[ -d "${CARGO_HOME:-$HOME/.cargo}/registry" ] && cache=(-v "${CARGO_HOME:-$HOME/.cargo}/registry:/usr/local/cargo/registry")
podman build --runtime runc --format docker "${cache[@]}" -t "$IMAGE" . > "$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log" >&2; fail "podman build (log above)"; }
size=$(podman image inspect -f '{{.Size}}' "$IMAGE")
ok "built in $((SECONDS - t)) s; image $((size / 1000000)) MB"
user=$(podman image inspect -f '{{.Config.User}}' "$IMAGE")
case "$user" in "" | 0 | 0:* | root | root:*) fail "the image runs as root ('$user')" ;; esac
ok "image user $user"

say "fixture index (the image's own binary: ingest | index)"
mkdir -p "$WORK/data" "$WORK/models"
# One-off commands: no health check to schedule (and no complaint that systemd is absent to schedule it).
run() { podman run --rm --no-healthcheck "$@"; }
run -v "$PWD/fixtures:/fixtures:ro" "$IMAGE" ingest -q /fixtures/audioset_v1_embeddings > "$WORK/clips.jsonl"
# Built as root on the host side, as a user's own index would be: the server reads it as another user.
run -i --user 0 -v "$WORK/data:/data" "$IMAGE" index -q --index /data/index < "$WORK/clips.jsonl"
ok "$(wc -l < "$WORK/clips.jsonl") clips in $WORK/data/index"

port=$((20000 + RANDOM % 20000))
# Starts the image's default command on the index (read-only) as container $1, with more podman options after it.
# podman's complaints about systemd (none here, so no timer runs the health check) go to $WORK/podman.err.
serve() {
    local name=soundalike-test-$$-$1
    shift
    CONTAINERS+=("$name")
    podman run -d --name "$name" -p "127.0.0.1:$port:8080" -v "$WORK/data:/data:ro" "$@" "$IMAGE" \
        > /dev/null 2>> "$WORK/podman.err" || { cat "$WORK/podman.err" >&2; fail "podman run $name"; }
}
# Waits for /healthz to answer 200 from the container $1 started at $2 (`date +%s%N`); prints the seconds taken.
wait_healthy() {
    local i
    for i in $(seq 1 200); do
        if curl -fsS "http://127.0.0.1:$port/healthz" > "$WORK/health.json" 2> /dev/null; then
            secs_since "$2"
            return
        fi
        sleep 0.05
    done
    podman logs "$1" >&2 || true
    fail "no /healthz 200 within 10 s"
}
# Seconds since a `date +%s%N`, to the millisecond.
secs_since() {
    local ms=$((($(date +%s%N) - $1) / 1000000))
    printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}
same_json() { python3 -c 'import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:3]); sys.exit(a != b)' "$@"; }

say "serve without weights"
c=soundalike-test-$$-plain
t=$(date +%s%N)
serve plain
secs=$(wait_healthy "$c" "$t")
ok "/healthz 200 $(cat "$WORK/health.json") $secs s after podman run -d began"
pid_user=$(podman exec "$c" awk '/^Uid:/ { print $2 }' /proc/1/status)
[ "$pid_user" != 0 ] || fail "the server runs as root"
ok "the server (pid 1) runs as uid $pid_user, the index mounted read-only"
curl -fsS "http://127.0.0.1:$port/api/recommend?id=xtGmrLOsjHk" > "$WORK/api.json"
run -v "$WORK/data:/data:ro" "$IMAGE" recommend --index /data/index --id xtGmrLOsjHk --json > "$WORK/cli.json"
same_json "$WORK/api.json" "$WORK/cli.json" || fail "/api/recommend?id=xtGmrLOsjHk differs from recommend --json"
ok "/api/recommend?id=xtGmrLOsjHk equals recommend --json ($(grep -o '"rank"' "$WORK/api.json" | wc -l) results)"
status=$(curl -sS -o "$WORK/upload.json" -w '%{http_code}' -F audio=@fixtures/audio/source.wav \
    "http://127.0.0.1:$port/api/recommend")
[ "$status" = 503 ] && grep -q 'vggish-10086976.pth' "$WORK/upload.json" \
    || fail "an upload without weights: $status $(cat "$WORK/upload.json")"
ok "an upload without weights: 503 $(head -c 120 "$WORK/upload.json")..."
podman healthcheck run "$c" > /dev/null 2>> "$WORK/podman.err" || fail "podman healthcheck run: unhealthy"
ok "HEALTHCHECK passes (podman healthcheck run)"
t=$(date +%s%N)
podman stop "$c" > /dev/null 2>> "$WORK/podman.err"
stop=$(secs_since "$t")
code=$(podman inspect -f '{{.State.ExitCode}}' "$c")
[ "$code" = 0 ] || fail "exit code $code after podman stop"
awk -v s="$stop" 'BEGIN { exit !(s < 5) }' || fail "podman stop took $stop s (SIGTERM ignored?)"
ok "podman stop (SIGTERM): exit 0 in $stop s"

say "serve with weights in /models"
if [ -r "$WEIGHTS" ]; then
    install -m 0644 "$WEIGHTS" "$WORK/models/weights.safetensors"
    install -m 0644 fixtures/vggish-golden/pca_params.npz "$WORK/models/pca_params.npz"
    env=(-e SOUNDALIKE_WEIGHTS=/models/weights.safetensors -e SOUNDALIKE_PCA=/models/pca_params.npz)
    c=soundalike-test-$$-weights
    t=$(date +%s%N)
    serve weights -v "$WORK/models:/models:ro" "${env[@]}"
    secs=$(wait_healthy "$c" "$t")
    ok "/healthz 200 $secs s after podman run -d began (the 288 MB of weights loaded first)"
    curl -fsS -F audio=@fixtures/audio/source.wav -F start=1 -F end=7.5 -F k=6 \
        "http://127.0.0.1:$port/api/recommend" > "$WORK/upload.json" || fail "an upload with weights"
    run -v "$WORK/data:/data:ro" -v "$WORK/models:/models:ro" -v "$PWD/fixtures/audio:/audio:ro" "${env[@]}" \
        "$IMAGE" recommend --index /data/index --audio /audio/source.wav --start 1 --end 7.5 -k 6 --json \
        > "$WORK/cli.json"
    python3 - "$WORK/upload.json" "$WORK/cli.json" << 'EOF' || fail "the upload's results differ from recommend --audio"
import json, sys
api, cli = (json.load(open(f)) for f in sys.argv[1:3])
sys.exit(not api["results"] or api["results"] != cli["results"])
EOF
    ok "an upload (source.wav, 1-7.5 s) equals recommend --audio --json ($(grep -o '"rank"' "$WORK/upload.json" | wc -l) results)"
    podman stop "$c" > /dev/null 2>> "$WORK/podman.err"
    [ "$(podman inspect -f '{{.State.ExitCode}}' "$c")" = 0 ] || fail "exit code after podman stop"
    ok "podman stop: exit 0"
else
    echo "skipped: no weights at $WEIGHTS (cargo test writes them; or set SOUNDALIKE_TEST_WEIGHTS)"
fi

say "all checks passed in $((SECONDS - began)) s"
