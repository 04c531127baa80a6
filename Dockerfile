# syntax=docker/dockerfile:1
# One image for every Shoal service; the argument picks the service:
#   docker run shoal pool-node | balancer | autoscaler | health-checker
#
# Behind a TLS-intercepting proxy, give npm the proxy's CA as a build secret
# (it is used by the npm steps only and is not kept in any layer):
#   docker build --secret id=npm_ca,src=$NODE_EXTRA_CA_CERTS -t shoal .
# Where no registry is reachable, build local base images first
# (deploy/scripts/base-images.sh) and pass --build-arg NODE_IMAGE=localhost/shoal-node:20.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: every dependency, compile TypeScript ---------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY shared/protocol/package.json shared/protocol/
COPY shared/config/package.json shared/config/
COPY shared/runtime/package.json shared/runtime/
COPY shared/client/package.json shared/client/
COPY services/pool-node/package.json services/pool-node/
COPY services/balancer/package.json services/balancer/
COPY services/autoscaler/package.json services/autoscaler/
COPY services/health-checker/package.json services/health-checker/
COPY services/cli/package.json services/cli/
RUN --mount=type=secret,id=npm_ca \
    if [ -s /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi; \
    npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.base.json tsconfig.json ./
COPY shared shared
COPY services services
RUN npx tsc -b

# ---- prod-deps: production dependencies only ---------------------------------
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY --from=build /app/package.json /app/package-lock.json ./
COPY --from=build /app/shared/protocol/package.json shared/protocol/
COPY --from=build /app/shared/config/package.json shared/config/
COPY --from=build /app/shared/runtime/package.json shared/runtime/
COPY --from=build /app/shared/client/package.json shared/client/
COPY --from=build /app/services/pool-node/package.json services/pool-node/
COPY --from=build /app/services/balancer/package.json services/balancer/
COPY --from=build /app/services/autoscaler/package.json services/autoscaler/
COPY --from=build /app/services/health-checker/package.json services/health-checker/
COPY --from=build /app/services/cli/package.json services/cli/
RUN --mount=type=secret,id=npm_ca \
    if [ -s /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi; \
    npm ci --omit=dev --no-audit --no-fund --loglevel=error

# ---- runtime ------------------------------------------------------------------
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    SHOAL_CONFIG=/etc/shoal/session-pool.yaml \
    SHOAL_HTTP_HOST=0.0.0.0 \
    SHOAL_HTTP_PORT=8080 \
    PATH=/app/node_modules/.bin:$PATH
WORKDIR /app
COPY --from=prod-deps /app/node_modules node_modules
# The Claude Code CLI for claude-cli pools: the npm package (a dev dependency
# of the repository) with its native binary, as `claude` on PATH.
COPY --from=build /app/node_modules/@anthropic-ai node_modules/@anthropic-ai
RUN ln -sf ../@anthropic-ai/claude-code/bin/claude.exe node_modules/.bin/claude
COPY --from=build /app/package.json ./
COPY --from=build /app/shared shared
COPY --from=build /app/services services
COPY bin bin
COPY config/session-pool.yaml /etc/shoal/session-pool.yaml
# Sources, tests and build info stay behind; only dist and package.json per package.
RUN find shared services -mindepth 2 -maxdepth 2 \( -name src -o -name scripts -o -name '*.tsbuildinfo' -o -name tsconfig.json \) -exec rm -rf {} + \
 && mkdir -p /var/lib/shoal && chown node:node /var/lib/shoal
USER node
ENV HOME=/var/lib/shoal
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["node", "/app/bin/shoal-service.js", "healthcheck"]
# exec form: node is PID 1 and gets SIGTERM itself (each service drains on it).
# Child processes (Claude CLIs) are reaped by their pool-node; run with
# `--init` (compose: `init: true`) to also reap strays.
ENTRYPOINT ["node", "/app/bin/shoal-service.js"]
CMD ["pool-node"]
