# The wasm-mirror image: one image for the agent (the DaemonSet in infra/kubernetes) and the
# embedded server. Its entrypoint is the `wasm-mirror` command; the arguments pick the role.
#
#   docker build -t ghcr.io/your-org/wasm-mirror:0.1.0 .
#   docker run --rm ghcr.io/your-org/wasm-mirror:0.1.0 --help
#   docker run -p 8080:8080 -v wasm-mirror-data:/data ghcr.io/your-org/wasm-mirror:0.1.0 serve --host 0.0.0.0
#
# The tag is the one infra/kubernetes/agent-daemonset.yaml names, and the version is
# package.json's; test/packaging/dockerfile.test.ts keeps the three in step.

# Build: the same package `npm pack` makes (the CLI bundled into one file, no dependencies),
# installed the way a user installs it.
FROM node:22-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY bin/ bin/
COPY shared/ shared/
COPY README.md ./
RUN npm pack --pack-destination /tmp \
  && npm install --global --prefix /opt/wasm-mirror --offline --no-audit --no-fund /tmp/wasm-mirror-*.tgz \
  && mkdir -p /out/data

# Run: Node and the package, nothing else; no shell, no package manager.
FROM gcr.io/distroless/nodejs22-debian12:nonroot
COPY --from=build /opt/wasm-mirror/lib/node_modules/wasm-mirror /app
# The working directory is where `serve` keeps ./wasm-mirror-data by default; mount a volume here.
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
# The same user as the DaemonSet's runAsUser, so files the agent writes keep one owner.
USER 65532:65532
EXPOSE 8080 15099
ENTRYPOINT ["/nodejs/bin/node", "/app/bin/wasm-mirror.mjs"]
CMD ["--help"]
