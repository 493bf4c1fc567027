# Image of deploy/deploy.yaml where a Docker engine exists:
#   docker build --build-arg COCOON_GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t cocoon-operator:0.1.0 .
# Without one, `make image` writes the equivalent OCI image (docs/install.md).
# The binary runs as UID 65532 on a read-only root filesystem; it needs no shell.
FROM rust:1.95-bookworm AS build
ARG COCOON_GIT_COMMIT=unknown
WORKDIR /src
COPY . .
RUN COCOON_GIT_COMMIT=$COCOON_GIT_COMMIT cargo build --release --locked --bin cocoon-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/cocoon-operator /usr/local/bin/cocoon-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/cocoon-operator"]
CMD ["run"]
