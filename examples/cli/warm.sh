#!/usr/bin/env bash
# Fill a cache directory with base images ahead of builds (kaniko's warmer), by name and by
# the FROM lines of a Dockerfile, then build from it. Push a base there first, e.g.
#   skopeo copy --dest-tls-verify=false docker://busybox:1.36 docker://127.0.0.1:5000/busybox:1.36
# (offline: `kiln build` a context holding a static busybox as bin/busybox and bin/sh,
# FROM scratch + COPY bin /bin, to 127.0.0.1:5000/busybox:1.36)
#   examples/cli/warm.sh 127.0.0.1:5000
source "$(dirname "$0")/common.sh" "$@"
cat > "$work/ctx/Dockerfile.base" <<DOCKERFILE
FROM $registry/busybox:1.36
RUN cat /hello.txt 2>/dev/null || echo warm
DOCKERFILE
kiln warm --cache-dir "$work/cache" --image "$registry/busybox:1.36" --insecure-registry "$registry"
kiln warm --cache-dir "$work/cache" --dockerfile "$work/ctx/Dockerfile.base" --insecure-registry "$registry"
# The base is now local: only the RUN step's layer goes over the network.
kiln build --context "$work/ctx" --dockerfile "$work/ctx/Dockerfile.base" --cache --cache-dir "$work/cache" \
  --destination "$registry/kiln-example:warm" --insecure-registry "$registry"
