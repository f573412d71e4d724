#!/usr/bin/env bash
# Build the spatialx CPU image on THIS machine, with no image registry, and run docker/smoke.sh in it.
# Not part of `make test`. Needs root (apt-get, dockerd, debootstrap) and the Debian archive and a Python package
# index (PyPI or the machine's pip configuration) reachable from the host; nothing is pulled from Docker Hub.
#
#   docker/build-and-smoke.sh              # everything; the base image and downloaded wheels are reused if present
#   REBUILD_BASE=1 docker/build-and-smoke.sh   # debootstrap the base again
#   SMOKE_QUICK=1 docker/build-and-smoke.sh    # smoke without the full demo
#
# Steps: (1) docker.io + debootstrap installed, dockerd running; (2) a minbase Debian bookworm with python3 (3.11)
# from debootstrap, imported as $BASE_IMAGE; (3) `pip download` of torch's CPU build and every dependency as
# cp311/manylinux wheels into docker/wheels (git-ignored); (4) `docker build --target cpu` with BASE=$BASE_IMAGE
# and WHEELS=docker/wheels (pip --no-index --find-links); (5) `docker run` of docker/smoke.sh; (6) non-zero exit
# on any failure.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

BASE_IMAGE=${BASE_IMAGE:-spatialx-base:bookworm}
IMAGE=${IMAGE:-spatialx-cpu}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOTFS=${ROOTFS:-/var/tmp/spatialx-rootfs-$SUITE}
WHEELS=docker/wheels
# Where pip finds torch's CPU build. Empty: the host's pip configuration (on the project's machines a local
# torch-*+cpu wheel in /opt/wheels). Elsewhere: TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}
# The legacy builder by default: BuildKit needs the buildx plugin with recent docker CLIs.
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}

T0=$(date +%s)
log() { printf '\n[build-and-smoke %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
# The host's pip configuration names local indexes that lack most projects: drop pip's warning for each one.
quiet_pip() { "$PY" -m pip "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
die() { printf '\n[build-and-smoke] FAILED: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; [ $rc -eq 0 ] || printf "\n[build-and-smoke] FAILED (exit %s) after %ss\n" "$rc" "$(( $(date +%s) - T0 ))" >&2' EXIT

# ---- the torch pin: one place, the Makefile's TORCH_PIN; the Dockerfile's default must agree
TORCH_VERSION=$(sed -n 's/^TORCH_PIN[[:space:]]*?*=[[:space:]]*torch==\([^[:space:]]*\).*/\1/p' Makefile)
[ -n "$TORCH_VERSION" ] || die "no TORCH_PIN ?= torch==X in the Makefile"
DOCKERFILE_TORCH=$(sed -n 's/^ARG TORCH_VERSION=\(.*\)$/\1/p' docker/Dockerfile)
[ "$DOCKERFILE_TORCH" = "$TORCH_VERSION" ] \
    || die "docker/Dockerfile's ARG TORCH_VERSION=$DOCKERFILE_TORCH differs from the Makefile's torch==$TORCH_VERSION"
log "torch pin: torch==$TORCH_VERSION (Makefile TORCH_PIN)"

# ---- (1) docker and debootstrap, dockerd running
need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log: /tmp/dockerd.log)"
    nohup dockerd > /tmp/dockerd.log 2>&1 &
    for _ in $(seq 60); do
        [ -S /var/run/docker.sock ] && docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || die "dockerd did not start; see /tmp/dockerd.log"
fi
log "docker: client $(docker version --format '{{.Client.Version}}' 2>/dev/null), server $(docker version --format '{{.Server.Version}}' 2>/dev/null)"

# ---- (2) the base image: a minbase Debian with python3, python3-venv (and pip) from the Debian archive
if [ "${REBUILD_BASE:-0}" = 1 ] || ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "debootstrap --variant=minbase $SUITE $ROOTFS $MIRROR"
    rm -rf "$ROOTFS"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$ROOTFS" "$MIRROR" > /tmp/spatialx-debootstrap.log 2>&1 \
        || { tail -20 /tmp/spatialx-debootstrap.log; die "debootstrap (log: /tmp/spatialx-debootstrap.log)"; }
    chroot "$ROOTFS" apt-get clean
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin
    log "docker import -> $BASE_IMAGE"
    tar -C "$ROOTFS" -c . | docker import \
        -c 'ENV LANG=C.UTF-8' \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["/bin/bash"]' - "$BASE_IMAGE"
    rm -rf "$ROOTFS"
else
    log "base image $BASE_IMAGE exists (REBUILD_BASE=1 to make it again)"
fi
docker run --rm "$BASE_IMAGE" python3 --version

# ---- (3) wheels for the image's Python (bookworm: CPython 3.11, glibc 2.36, x86_64), read from the image
PY=${PY:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
IMG_PY=$(docker run --rm "$BASE_IMAGE" python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
IMG_ABI=cp${IMG_PY/./}
IMG_GLIBC=$(docker run --rm "$BASE_IMAGE" python3 -c 'import os; print(os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[1])')
# Every manylinux tag up to the image's glibc, spelled out: pip does not widen a single --platform here.
TAGS=(--only-binary=:all: --implementation cp --python-version "$IMG_PY" --abi "$IMG_ABI")
for minor in $(seq "$IMG_GLIBC" -1 17); do TAGS+=(--platform "manylinux_2_${minor}_x86_64"); done
TAGS+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64
       --platform linux_x86_64)
TORCH_INDEX=()
[ -n "$TORCH_INDEX_URL" ] && TORCH_INDEX=(--extra-index-url "$TORCH_INDEX_URL")
mkdir -p "$WHEELS"
log "pip download torch==$TORCH_VERSION (CPU build) for $IMG_ABI -> $WHEELS"
quiet_pip download --quiet --no-deps -d "$WHEELS" "${TAGS[@]}" "${TORCH_INDEX[@]}" "torch==$TORCH_VERSION"
TORCH_WHEEL=$(ls "$WHEELS"/torch-"$TORCH_VERSION"*-"$IMG_ABI"-*.whl 2>/dev/null | sort | tail -1)
case "$TORCH_WHEEL" in
    *+cpu-*) log "torch wheel: $(basename "$TORCH_WHEEL") ($(du -h "$TORCH_WHEEL" | cut -f1))" ;;
    *) die "no CPU torch wheel (torch-$TORCH_VERSION+cpu-...) in $WHEELS (got '${TORCH_WHEEL:-nothing}'): the default
    PyPI torch for Linux is the CUDA build; set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" ;;
esac
# torch first and alone (above); now everything else, resolved with the same pin so no second torch comes in.
mapfile -t DEPS < <("$PY" - <<'EOF'
import tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)
for req in project["build-system"]["requires"] + project["project"]["dependencies"]:
    print(req)
EOF
)
log "pip download ${#DEPS[@]} requirements (pyproject build-system + dependencies)"
quiet_pip download --quiet -d "$WHEELS" "${TAGS[@]}" "${TORCH_INDEX[@]}" \
    "$TORCH_WHEEL" "${DEPS[@]}"
if ls "$WHEELS" | grep -iE '^(nvidia|cuda|triton)[-_]'; then
    die "CUDA packages downloaded into $WHEELS (above): the CUDA torch build came in"
fi
[ "$(ls "$WHEELS"/torch-*.whl | wc -l)" = 1 ] || die "more than one torch wheel in $WHEELS: $(ls "$WHEELS"/torch-*.whl)"
log "$WHEELS: $(ls "$WHEELS" | wc -l) files, $(du -sh "$WHEELS" | cut -f1)"

# ---- (4) the image
log "docker build --target cpu -t $IMAGE (BASE=$BASE_IMAGE, WHEELS=$WHEELS, DOCKER_BUILDKIT=$DOCKER_BUILDKIT)"
TB=$(date +%s)
docker build -f docker/Dockerfile --target cpu -t "$IMAGE" \
    --build-arg BASE="$BASE_IMAGE" --build-arg WHEELS="$WHEELS" --build-arg TORCH_VERSION="$TORCH_VERSION" \
    --network none . 2>&1 | tee /tmp/spatialx-docker-build.log
log "built $IMAGE in $(( $(date +%s) - TB )) s: $(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}')"
docker image ls "$IMAGE"

# ---- (5) smoke
log "docker run --rm --entrypoint spatialx-smoke $IMAGE"
TS=$(date +%s)
SMOKE_ARGS=()
[ "${SMOKE_QUICK:-0}" = 1 ] && SMOKE_ARGS=(--quick)
docker run --rm --network none --entrypoint spatialx-smoke "$IMAGE" "${SMOKE_ARGS[@]}" 2>&1 \
    | tee /tmp/spatialx-smoke.log
grep -q '^SMOKE OK$' /tmp/spatialx-smoke.log || die "smoke did not report SMOKE OK (log: /tmp/spatialx-smoke.log)"
log "smoke passed in $(( $(date +%s) - TS )) s; total $(( $(date +%s) - T0 )) s"
