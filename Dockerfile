# syntax=docker/dockerfile:1
# The kubefence image: the operator, the node agent and the CLI in one
# binary, as deploy/ runs it (ghcr.io/kubefence/kubefence:<version>;
# deploy/base/deployment.yaml and deploy/components/agent/daemonset.yaml).
#
#   docker build --build-arg KUBEFENCE_GIT_COMMIT="$(git rev-parse HEAD)" \
#     -t ghcr.io/kubefence/kubefence:0.1.0 .
#
# Build stage: Rust on Debian, plus Debian's clang and libbpf headers for
# the node agent's eBPF program (scripts/install-bpf-toolchain.sh, as CI).
# The release profile strips the binary and uses thin LTO.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY scripts/install-bpf-toolchain.sh scripts/
RUN scripts/install-bpf-toolchain.sh
COPY . .
# .dockerignore leaves .git out: the commit `kubefence version` reports
# comes from here.
ARG KUBEFENCE_GIT_COMMIT=unknown
ENV KUBEFENCE_GIT_COMMIT=${KUBEFENCE_GIT_COMMIT}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kubefence \
    && cp target/release/kubefence /kubefence

# Runtime: distroless (glibc, CA certificates, no shell, no package
# manager), non-root. Nothing is written at run time, so the Deployment's
# readOnlyRootFilesystem holds.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /kubefence /usr/local/bin/kubefence
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kubefence"]
CMD ["operator"]
