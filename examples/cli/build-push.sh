#!/usr/bin/env bash
# Build and push to REGISTRY with credentials from DOCKER_AUTH_CONFIG (what GitLab jobs set),
# under two tags, with the layer cache in the registry too.
#   REGISTRY_USER=u REGISTRY_PASSWORD=p examples/cli/build-push.sh 127.0.0.1:5000
source "$(dirname "$0")/common.sh" "$@"
if [[ -n ${REGISTRY_USER:-} ]]; then
  auth=$(printf '%s:%s' "$REGISTRY_USER" "${REGISTRY_PASSWORD:-}" | base64 -w0)
  export DOCKER_AUTH_CONFIG="{\"auths\":{\"$registry\":{\"auth\":\"$auth\"}}}"
fi
kiln build --context "$work/ctx" --dockerfile "$work/ctx/Dockerfile" \
  --destination "$registry/kiln-example:1.0" --destination "$registry/kiln-example:latest" \
  --cache --cache-repo "$registry/kiln-example/cache" --cache-dir "$work/cache" \
  --digest-file "$work/digest" --insecure-registry "$registry"
echo "pushed $registry/kiln-example@$(cat "$work/digest")"
