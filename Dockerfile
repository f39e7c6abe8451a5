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
LABEL org.opencontainers.image.title="atlas-archiver" \
      org.opencontainers.image.description="Archives MongoDB Atlas backup snapshots into S3-compatible storage, exactly once and verified" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/atlas-archiver/atlas-archiver"
COPY --from=build /src/target/release/atlas-archiver /usr/local/bin/atlas-archiver
COPY --from=build --chown=65532:65532 /out/state /var/lib/atlas-archiver
ENV ATLAS_ARCHIVER_CONFIG=/etc/atlas-archiver/config.toml
VOLUME ["/var/lib/atlas-archiver"]
# /healthz, /readyz, /metrics (set [server] listen = "0.0.0.0:9187" and a token_file in the config).
EXPOSE 9187
USER 65532:65532
# No shell in the image: the binary asks its own /healthz (at [server] listen).
HEALTHCHECK --interval=60s --timeout=15s --start-period=2m --retries=3 \
  CMD ["/usr/local/bin/atlas-archiver", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/atlas-archiver"]
CMD ["run", "--log-format", "json"]
