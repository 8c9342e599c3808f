/**
 * Serves `/metrics` (Prometheus text), `/healthz` (the process answers) and `/readyz` (the agent
 * holds a verified set to work from) for the agent on a given host:port.
 */
import { createServer, type Server } from 'node:http';
import { WasmMirrorError } from '../core/errors.ts';
import { PROMETHEUS_CONTENT_TYPE, type PrometheusRegistry } from '../platform/telemetry.ts';

export function parseListenAddress(addr: string, flag = '--metrics-addr'): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:]*)):(\d{1,5})$/.exec(addr) ?? /^()()(\d{1,5})$/.exec(addr);
  const port = Number(m?.[3]);
  if (m === null || !Number.isInteger(port) || port > 65535) {
    throw new WasmMirrorError('USAGE', `${flag} must be HOST:PORT or PORT, got "${addr}"`);
  }
  // A bare port (or ":port") listens on loopback only; listening beyond the node is an explicit choice.
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

export interface MetricsServerOptions {
  /** Answers `/readyz`: 200 when true, 503 otherwise. Always ready when absent. */
  ready?: () => boolean | Promise<boolean>;
}

export async function startMetricsServer(
  addr: string,
  registry: PrometheusRegistry,
  options: MetricsServerOptions = {},
): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const { host, port } = parseListenAddress(addr);
  const server = createServer(async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (req.url === '/metrics') {
      await registry.collect();
      const text = await registry.render();
      res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE }).end(text);
    } else if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (req.url === '/readyz') {
      const ready =
        options.ready === undefined || (await Promise.resolve(options.ready()).catch(() => false));
      res
        .writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' })
        .end(ready ? 'ready\n' : 'not ready\n');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  return {
    server,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}/metrics`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
