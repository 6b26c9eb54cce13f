# syntax=docker/dockerfile:1
#
# pgrelay in a container: a build stage on Debian 12 that compiles and unit-tests pgrelay, and a
# small debian:12-slim runtime stage with only the shared libraries the binary links with
# (libevent core + extra, libssl3, libyaml, libpg_query, libpq for `pgrelay migrate`),
# running as a non-root user.
#
#   docker build -t pgrelay .
#   docker run --rm -v $PWD/proxy.yaml:/etc/pgrelay/proxy.yaml:ro -p 6432:6432 pgrelay
#
# Inside a container, proxy.yaml must listen on every address to be reachable through -p:
#   listen: { host: 0.0.0.0, port: 6432 }
# and services.*.primary.host must name the PostgreSQL server as the container sees it (not
# 127.0.0.1, which is the container itself; e.g. host.docker.internal or a service name).
# Signals reach pgrelay directly (it is PID 1's only program): `docker kill -s HUP` reloads the
# mounted file, `docker stop` (SIGTERM) lets open transactions finish for proxy.shutdown_timeout;
# give docker stop a longer --time than that (default 10 s). Check a file before mounting it:
#   docker run --rm -v $PWD/proxy.yaml:/etc/pgrelay/proxy.yaml:ro pgrelay --check -c /etc/pgrelay/proxy.yaml

FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev meson ninja-build pkg-config libevent-dev libssl-dev libyaml-dev \
      libpg-query-dev libprotobuf-c-dev libpq-dev libhiredis-dev libsystemd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build reads, so edits elsewhere (docs, scripts, tests/integration) keep the cache.
COPY meson.build ./
COPY src/ src/
COPY tests/unit/ tests/unit/
COPY tests/tools/ tests/tools/
COPY proxy.yaml.example ./
RUN meson setup /build --buildtype=release \
 && ninja -C /build \
 && meson test -C /build --print-errorlogs \
 && strip /build/pgrelay \
 && /build/pgrelay --check -c proxy.yaml.example

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libevent-core-2.1-7 libevent-extra-2.1-7 libssl3 libyaml-0-2 libpg-query1504.0 libpq5 libhiredis0.14 libsystemd0 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 pgrelay \
 && useradd --uid 10001 --gid pgrelay --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin pgrelay \
 && mkdir -p /etc/pgrelay
COPY --from=build /build/pgrelay /usr/local/bin/pgrelay
COPY --from=build /src/proxy.yaml.example /etc/pgrelay/proxy.yaml.example
USER pgrelay:pgrelay
EXPOSE 6432
ENTRYPOINT ["pgrelay"]
CMD ["-c", "/etc/pgrelay/proxy.yaml"]
