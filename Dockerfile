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
# uidmap gives newuidmap/newgidmap for rootless builds with subordinate id ranges.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates uidmap \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/kiln /usr/local/bin/kiln
ENTRYPOINT ["/usr/local/bin/kiln"]
