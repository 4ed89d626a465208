# Sourced by the recipes: the registry argument and a scratch context.
# Each recipe takes the registry (host:port) as its one argument. A plain-HTTP registry on this
# machine, e.g. `docker-registry serve config.yml` on 127.0.0.1:5000, needs the
# `--insecure-registry` the recipes pass; drop it for a registry with TLS.
set -euo pipefail
if [[ $# -ne 1 ]]; then
  echo "usage: $0 REGISTRY   (e.g. 127.0.0.1:5000)" >&2
  exit 2
fi
registry=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A context that needs no base image, so the recipes run offline against a local registry.
mkdir -p "$work/ctx"
printf 'hello from kiln\n' > "$work/ctx/hello.txt"
cat > "$work/ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch AS app
ARG VERSION=dev
LABEL org.opencontainers.image.version=$VERSION
COPY hello.txt /hello.txt
LABEL org.opencontainers.image.title=kiln-example
DOCKERFILE
