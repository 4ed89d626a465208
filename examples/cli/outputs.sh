#!/usr/bin/env bash
# Build without pushing and write the image as an OCI layout and as a `docker load` tarball;
# REGISTRY only names the image.
#   examples/cli/outputs.sh 127.0.0.1:5000
source "$(dirname "$0")/common.sh" "$@"
out=${OUT:-$PWD/kiln-out}
mkdir -p "$out"
kiln build --context "$work/ctx" --no-push --destination "$registry/kiln-example:local" \
  --oci-layout-path "$out/oci" --tar-path "$out/image.tar" --cache-dir "$work/cache"
echo "OCI layout in $out/oci (skopeo inspect oci:$out/oci), tarball $out/image.tar"
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  docker load -i "$out/image.tar"
fi
