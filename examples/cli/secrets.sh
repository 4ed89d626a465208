#!/usr/bin/env bash
# RUN --mount=type=secret: a file and an environment variable reach the step, never a layer.
# Needs a base with a shell in REGISTRY (see warm.sh).
#   examples/cli/secrets.sh 127.0.0.1:5000
source "$(dirname "$0")/common.sh" "$@"
printf 'registry=https://npm.example/\n' > "$work/npmrc"
export API_TOKEN=example-token
cat > "$work/ctx/Dockerfile" <<DOCKERFILE
FROM $registry/busybox:1.36
RUN --mount=type=secret,id=npmrc test -s /run/secrets/npmrc
RUN --mount=type=secret,id=api,env=API_TOKEN test -n "\$API_TOKEN"
DOCKERFILE
kiln build --context "$work/ctx" --secret id=npmrc,src="$work/npmrc" --secret id=api,env=API_TOKEN \
  --destination "$registry/kiln-example:secrets" --cache-dir "$work/cache" --insecure-registry "$registry"
