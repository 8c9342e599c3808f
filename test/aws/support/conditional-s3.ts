/**
 * fauxqs does not enforce `If-None-Match: *`, so this proxy on 127.0.0.1 adds S3's create-only
 * semantics in front of it: a conditional PutObject or CompleteMultipartUpload is serialised per
 * key, and answered 412 PreconditionFailed when the key already exists. Everything else passes
 * through untouched. It lets the shared ObjectStore contract run over the real S3 adapter.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ConditionalS3Proxy {
  endpoint: string;
  /** Conditional writes refused with 412. */
  refused: number;
  stop(): Promise<void>;
}

export async function startConditionalS3Proxy(upstream: string): Promise<ConditionalS3Proxy> {
  const target = new URL(upstream);
  const locks = new Map<string, Promise<void>>();
  const state = { refused: 0 };

  const exists = (path: string) =>
    new Promise<boolean>((resolve, reject) => {
      const req = request(
        { host: target.hostname, port: target.port, method: 'HEAD', path: path.split('?')[0] },
        (res) => {
          res.resume();
          resolve(res.statusCode === 200);
        },
      );
      req.on('error', reject);
      req.end();
    });

  const forward = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) =>
    new Promise<void>((resolve) => {
      const up = request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
          upRes.on('end', resolve);
        },
      );
      up.on('error', () => {
        res.writeHead(502);
        res.end();
        resolve();
      });
      req.pipe(up);
    });

  const server: Server = createServer((req, res) => {
    const url = req.url ?? '/';
    const conditional =
      req.headers['if-none-match'] === '*' &&
      ((req.method === 'PUT' && !url.includes('partNumber=')) ||
        (req.method === 'POST' && url.includes('uploadId=')));
    if (!conditional) {
      void forward(req, res);
      return;
    }
    const key = url.split('?')[0]!;
    const previous = locks.get(key) ?? Promise.resolve();
    const turn = previous.then(async () => {
      if (await exists(url)) {
        state.refused++;
        req.resume();
        res.writeHead(412, { 'content-type': 'application/xml' });
        res.end(
          '<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code>' +
            '<Message>At least one of the pre-conditions you specified did not hold</Message></Error>',
        );
        return;
      }
      await forward(req, res);
    });
    const settled = turn.catch(() => {});
    locks.set(key, settled);
    void settled.then(() => {
      if (locks.get(key) === settled) locks.delete(key);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get refused() {
      return state.refused;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
