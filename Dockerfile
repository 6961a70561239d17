# idsync image: `idsync <command>` (worker, import, export, watch, archive, sandbox, ...).
#
#   docker build -t idsync:latest .                                    # from the public node:20 image
#   docker build --build-arg BASE_IMAGE=local/node:20-bookworm -t idsync:latest .   # no registry:
#       a local base with Node 20 (docker/build-local-images.sh makes one from Debian packages)
#
# The BASE_IMAGE must be Debian-based (apt-get) with node >= 20.18.1 and npm on PATH. The Dockerfile
# keeps to what the legacy builder understands (no BuildKit-only syntax): Debian's docker.io has
# no buildx.
ARG BASE_IMAGE=node:20-bookworm-slim

# Stage 1: production dependencies only (tsx and its esbuild are production dependencies: they
# build the CLI bundle below). npm's cache and the lock file's dev tree stay in this stage.
FROM ${BASE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the package's own `prepare` builds the CLI bundle, and the sources are not here
# yet (it is built in the final stage, below).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# Stage 2: the runtime.
FROM ${BASE_IMAGE}
# tini is PID 1: it forwards SIGTERM to node (so the worker's 30 s drain runs) and reaps zombies.
# Mount points owned by the idsync user, so new named volumes start writable for it: state dirs,
# scans, output (also the working directory), the sandbox's --dir.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && groupadd --system --gid 10001 idsync \
 && useradd --system --uid 10001 --gid idsync --home-dir /var/lib/idsync --no-create-home --shell /usr/sbin/nologin idsync \
 && mkdir -p /var/lib/idsync /scans /output /data \
 && chown idsync:idsync /var/lib/idsync /scans /output /data
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json tsconfig.json ./
COPY bin ./bin
COPY jobs ./jobs
COPY src ./src
COPY docker/entrypoint.sh docker/healthcheck.mjs ./docker/
# The CLI bundle and its V8 code caches (bin/bundle-build.mjs, what `npm ci` runs as `prepare`),
# checked at each start against the sizes and mtimes of the files it was built from. Built here, in
# the final stage (a COPY afterwards could change mtimes), as root: /app stays root-owned, so
# containers start at once and run on a read-only file system.
RUN chmod 0755 docker/entrypoint.sh \
 && node bin/bundle-build.mjs \
 && test -f .idsync-build/cli-*/main.cjs \
 && test -f .idsync-build/cli-*/main.cjs.cache

ENV NODE_ENV=production \
    IDSYNC_STATE_ROOT=/var/lib/idsync
USER idsync:idsync
# Relative paths (the default report dir idsync-reports/<runId>/, export --out) land in /output.
WORKDIR /output

# `idsync worker` and the job commands stop on SIGTERM: stop taking jobs, wait up to 30 s for
# in-flight ones, hand the rest back, exit 130. Give them stop_grace_period >= 45s (compose) or
# `docker stop -t 45`: 30 s drain + up to 10 s for cancelled jobs to return, with a margin.
STOPSIGNAL SIGTERM
# Redis PING + an API login with the configured credentials (or /healthz once --metrics-listen
# is set through IDSYNC_METRICS_LISTEN); see docker/healthcheck.mjs.
HEALTHCHECK --interval=30s --timeout=15s --start-period=20s --retries=3 CMD ["node", "/app/docker/healthcheck.mjs"]
ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker/entrypoint.sh"]
CMD ["--help"]
