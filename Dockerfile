# syntax=docker/dockerfile:1
# The images kiln ships: `--target kiln` (the builder, the default) and `--target runner`.
ARG RUST_VERSION=1.85
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kiln-builder -p kiln-runner \
 && install -D -t /out target/release/kiln target/release/kiln-runner

FROM debian:${DEBIAN}-slim AS runner
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/kiln /out/kiln-runner /usr/local/bin/
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/kiln-runner"]

FROM debian:${DEBIAN}-slim AS kiln
# uidmap gives newuidmap/newgidmap for rootless builds with subordinate id ranges. Debian makes
# them setuid root, and root without CAP_SYS_ADMIN (a pod's default capabilities) may not write
# another user's id maps: file capabilities let them run as the user, as BuildKit's rootless
# image does.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates uidmap libcap2-bin \
 && chmod u-s /usr/bin/newuidmap /usr/bin/newgidmap \
 && setcap cap_setuid=ep /usr/bin/newuidmap \
 && setcap cap_setgid=ep /usr/bin/newgidmap \
 && apt-get purge -y libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/kiln /usr/local/bin/kiln
ENTRYPOINT ["/usr/local/bin/kiln"]
