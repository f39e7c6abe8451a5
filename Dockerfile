# atlas-archiver container image: a static-enough release build on a distroless base, as a
# non-root user, with the journal on a volume.
#   docker build -t atlas-archiver .
#   docker run -v atlas-state:/var/lib/atlas-archiver -v $PWD/config.toml:/etc/atlas-archiver/config.toml:ro atlas-archiver
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
 && strip target/release/atlas-archiver \
 && mkdir -p /out/state

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/atlas-archiver /usr/local/bin/atlas-archiver
COPY --from=build --chown=65532:65532 /out/state /var/lib/atlas-archiver
ENV ATLAS_ARCHIVER_CONFIG=/etc/atlas-archiver/config.toml
VOLUME ["/var/lib/atlas-archiver"]
# /healthz, /readyz, /metrics (set [server] listen = "0.0.0.0:9187" and a token_file in the config).
EXPOSE 9187
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/atlas-archiver"]
CMD ["run", "--log-format", "json"]
