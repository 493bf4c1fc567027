# Image of deploy/deploy.yaml: docker build -t cocoon-operator:0.1.0 .
# The binary runs as UID 65532 on a read-only root filesystem; it needs no shell.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin cocoon-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/cocoon-operator /usr/local/bin/cocoon-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/cocoon-operator"]
CMD ["run"]
