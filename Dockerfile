# berth's container image: berth, the shared libraries it links, CA certificates and time zone
# data, on a distroless base; it runs as the non-root user 65532.
#
#   podman build -t REGISTRY/berth:TAG .        (or docker build; see README, "Install on a cluster")
#
# Build arguments:
#   BUILDER  the Debian 12 image berth is compiled on, and the one its libraries and time zone
#            data are taken from
#   RUNTIME  the base the image is made of: a nonroot user 65532, CA certificates, /tmp
#   BINARY   "compile" (the default) builds berth with cargo inside the build; "context" takes
#            the release build already at target/release/berth in the build context, made on
#            the same Debian release (tests/image.sh builds it so, with bases it makes from
#            Debian's packages, since no registry is reachable there)
ARG BUILDER=docker.io/library/rust:1.95-bookworm
ARG RUNTIME=gcr.io/distroless/static-debian12:nonroot
ARG BINARY=compile

FROM ${BUILDER} AS compile
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin berth \
    && install -D target/release/berth /out/usr/local/bin/berth

FROM ${BUILDER} AS context
COPY target/release/berth /out/usr/local/bin/berth

FROM ${BINARY} AS binary
# exactly the shared libraries berth links (the dynamic loader among them), as this Debian
# release resolves them, and the time zone data
RUN set -e; \
    for lib in $(ldd /out/usr/local/bin/berth | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do \
      cp --parents -L "$lib" /out/; \
    done; \
    mkdir -p /out/usr/share && cp -a /usr/share/zoneinfo /out/usr/share/

FROM ${RUNTIME}
COPY --from=binary /out/ /
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/berth"]
CMD ["run", "--config=/etc/berth"]
