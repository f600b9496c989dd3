# keyward container image. Build: docker build -t keyward .   Run: see README "Run with Docker".
# The build stage compiles with dev dependencies; the runtime stage gets the compiled output and
# production dependencies only. test/container.test.ts replays the build stage's RUN steps and
# starts the runtime stage's CMD, so keep each RUN a plain shell command.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV PRISMA_HIDE_UPDATE_MESSAGE=1 npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
# Dependencies first, so editing the sources reuses this layer. postinstall generates the Prisma
# client, which needs the schema, its config and the generate script. npm ci needs the manifest of
# every workspace the lockfile names. The server does not use @keyward/verify: the runtime stage
# gets no packages/ (its node_modules keeps the workspace link, which nothing resolves).
COPY package.json package-lock.json tsconfig.json tsconfig.build.json prisma.config.ts ./
COPY packages/verify/package.json ./packages/verify/package.json
COPY prisma ./prisma
COPY scripts/prisma-generate.mjs ./scripts/prisma-generate.mjs
RUN npm ci
COPY src ./src
COPY bin ./bin
# The web console (console/, React + Vite): `npm run build` compiles the server into dist/ and
# builds the console into dist/console/, which the runtime stage gets with the rest of dist/.
COPY scripts/build-console.mjs ./scripts/build-console.mjs
COPY console ./console
RUN npm run build
# `prune --omit=dev` alone keeps prisma and typescript: @prisma/client names them as optional
# peers, which npm keeps once installed. Dropping the devDependencies list first lets them go.
RUN npm pkg delete devDependencies && npm prune --omit=dev

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    DATA_DIR=/var/lib/keyward \
    LOG_FORMAT=json
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
COPY --from=build /app/prisma ./prisma
# The embedded PostgreSQL (used when DATABASE_URL is unset) keeps its data here: mount a volume.
RUN mkdir -p /var/lib/keyward && chown node:node /var/lib/keyward
VOLUME ["/var/lib/keyward"]
USER node
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["node", "dist/healthcheck.js"]
# node itself is PID 1 (no npm, no shell), so SIGTERM reaches the server's graceful shutdown;
# migrations are applied at start (DB_MIGRATE_ON_START, default true).
CMD ["node", "--enable-source-maps", "dist/server.js"]
