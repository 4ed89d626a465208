# syntax=docker/dockerfile:1
# The images kiln ships: `--target kiln` (the builder, the default) and `--target runner`.
# kiln-runner's Kubernetes executor names them `kiln:latest` (rootless builds) and
# `kiln-runner:latest` (the runner and every pod's clone container).
#
# Built from source by default. CI builds them with kiln itself from binaries it has just
# compiled, on a Debian it made (it cannot pull `rust:` or `debian:` from Docker Hub):
#   --build-arg BINARIES=prebuilt  (the context holds bin/kiln and bin/kiln-runner)
#   --build-arg BASE=<registry>/debian:bookworm-slim
ARG RUST_VERSION=1.85
ARG DEBIAN=bookworm
ARG BASE=debian:${DEBIAN}-slim
# The stage the binaries come from: `build` (compiled here) or `prebuilt` (from the context).
ARG BINARIES=build

FROM rust:${RUST_VERSION}-${DEBIAN} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kiln-builder -p kiln-runner \
 && install -D -t /out target/release/kiln target/release/kiln-runner

FROM scratch AS prebuilt
COPY bin/kiln bin/kiln-runner /out/

FROM ${BINARIES} AS binaries

FROM ${BASE} AS runner
# bash: the deploy example's config init container; git and ca-certificates: the clone.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bash ca-certificates git \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && useradd --uid 1000 --user-group --create-home --shell /bin/bash kiln
COPY --from=binaries /out/kiln /out/kiln-runner /usr/local/bin/
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/kiln-runner"]

FROM ${BASE} AS kiln
# uidmap: newuidmap/newgidmap for rootless builds with the subordinate ids useradd gives kiln.
# Debian makes them setuid root, and root without CAP_SYS_ADMIN (a pod's default capabilities)
# may not write another user's id maps: file capabilities let them run as the user, as
# BuildKit's rootless image does.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates uidmap libcap2-bin \
 && chmod u-s /usr/bin/newuidmap /usr/bin/newgidmap \
 && setcap cap_setuid=ep /usr/bin/newuidmap \
 && setcap cap_setgid=ep /usr/bin/newgidmap \
 && DEBIAN_FRONTEND=noninteractive apt-get purge -y libcap2-bin \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && useradd --uid 1000 --user-group --create-home --shell /bin/sh kiln \
 && install -d -o 1000 -g 1000 -m 0755 /kiln/cache
COPY --from=binaries /out/kiln /usr/local/bin/kiln
# Where kiln-runner's pods mount the shared cache; a `docker run` mounts a volume there too
# (kiln's overlay upper cannot live on the container's own overlayfs root).
ENV KILN_CACHE_DIR=/kiln/cache/kiln
USER 1000:1000
WORKDIR /home/kiln
ENTRYPOINT ["/usr/local/bin/kiln"]
