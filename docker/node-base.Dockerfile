# local/node:<version>-bookworm: Debian bookworm (the debootstrapped local/debian:bookworm) with the
# Node.js of the machine that builds it, for BASE_IMAGE of the idsync Dockerfile where no registry
# is reachable. docker/build-local-images.sh puts the host's `node` binary and its npm package into
# the build context (see there why not a .deb). Laid out like the public node image: /usr/local.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
# The host's NODE_EXTRA_CA_CERTS file (empty when it has none): the CAs its node and npm trust.
COPY extra-ca.pem /usr/local/share/idsync/extra-ca.pem
ENV NODE_EXTRA_CA_CERTS=/usr/local/share/idsync/extra-ca.pem
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && node --version && npm --version
CMD ["node"]
