#!/usr/bin/env bash
# What would run, without running it: stages, the wave each runs in, every step with its words
# expanded. Nothing is pulled or pushed; REGISTRY only names the image.
#   examples/cli/dry-run.sh 127.0.0.1:5000
source "$(dirname "$0")/common.sh" "$@"
kiln build --context "$work/ctx" --dockerfile "$work/ctx/Dockerfile" --target app \
  --build-arg VERSION=1.0 --destination "$registry/kiln-example:1.0" --dry-run
