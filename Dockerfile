# berth's container image: a static-enough release build on Debian, copied into a distroless
# base with CA certificates and time zone data; runs as the non-root user 65532.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin berth

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/share/zoneinfo /usr/share/zoneinfo
COPY --from=build /usr/lib/x86_64-linux-gnu/libssl.so.3 /usr/lib/x86_64-linux-gnu/libcrypto.so.3 /usr/lib/x86_64-linux-gnu/
COPY --from=build /usr/lib/x86_64-linux-gnu/libz.so.1 /usr/lib/x86_64-linux-gnu/
COPY --from=build /src/target/release/berth /usr/local/bin/berth
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/berth"]
CMD ["run", "--config=/etc/berth"]
