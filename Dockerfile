# peon's container image: one static-ish `peon` binary on a small base, `init/peon.orc` as the
# entrypoint (pre-flight checks, then `peon serve`), the data dir /home/peon as a volume.
#
# Targets:
#   runtime (default, last): builds peon from source in a Rust image. Needs BuildKit (the
#     default builder since Docker 23; on older engines set DOCKER_BUILDKIT=1) and a registry.
#       docker build --build-arg VERSION=1.2.3 -t peon:1.2.3 .
#   runtime-prebuilt: takes a binary built outside the image from `dist/peon` in the build
#     context, on any base. scripts/build-image uses it on machines without a registry, with a
#     base image it makes locally. It comes before the builder stage so that even the classic
#     builder (which builds every stage before the target) never needs a Rust image for it.

ARG BASE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

# What both runtimes share.
FROM ${BASE} AS common
ARG VERSION=dev
ENV VERSION=${VERSION} \
    PATH=/usr/local/bin:/usr/bin:/bin \
    PEON_DATA_DIR=/home/peon \
    PEON_LISTEN=0.0.0.0:5000
# The data dir belongs to uid 1000 (PEON's peon user) so the daemon can also run unprivileged
# (`user: "1000:1000"` plus the Docker socket's group); by default it runs as root like PEON.
RUN mkdir -p /home/peon && chown 1000:1000 /home/peon && chmod 0775 /home/peon
COPY init/peon.orc /usr/local/bin/peon.orc
VOLUME ["/home/peon"]
WORKDIR /home/peon
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["peon", "health"]
ENTRYPOINT ["/usr/local/bin/peon.orc"]
LABEL org.opencontainers.image.title="peon" \
      org.opencontainers.image.description="Game-server orchestrator compatible with PEON" \
      org.opencontainers.image.version="${VERSION}"

# The runtime from a prebuilt binary (scripts/build-image).
FROM common AS runtime-prebuilt
COPY dist/peon /usr/local/bin/peon

# The Rust build.
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY plans plans
RUN cargo build --release --locked && cp target/release/peon /peon

# The runtime built from source (default target).
FROM common AS runtime
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /peon /usr/local/bin/peon
