# A Redis image built from Debian's redis-server package, for machines that cannot pull the public
# redis image (docker/build-local-images.sh tags it local/idsync-redis:7; Debian bookworm ships 7.0).
# It takes the same `command:` as the public image in docker-compose.yml.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && mkdir -p /data \
 && chown redis:redis /data
USER redis
WORKDIR /data
EXPOSE 6379
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=3s --retries=10 CMD ["redis-cli", "ping"]
# Without a config file Redis 7 listens on every address in protected mode, refusing non-loopback
# clients that have no password: containers reach it over the compose network.
CMD ["redis-server", "--protected-mode", "no", "--dir", "/data"]
