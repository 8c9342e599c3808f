/**
 * A stand-in for Secrets Manager's GetSecretValue (JSON protocol, `X-Amz-Target:
 * secretsmanager.GetSecretValue`) on 127.0.0.1, so the SecretSource adapter runs through
 * Powertools Parameters and the real SDK client.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SecretsStandIn {
  endpoint: string;
  secrets: Map<string, string>;
  /** GetSecretValue calls per secret id (to see Powertools' cache at work). */
  reads: Map<string, number>;
  stop(): Promise<void>;
}

export async function startSecretsStandIn(initial: Record<string, string> = {}): Promise<SecretsStandIn> {
  const secrets = new Map(Object.entries(initial));
  const reads = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { SecretId?: string };
      const id = String(body.SecretId);
      res.setHeader('content-type', 'application/x-amz-json-1.1');
      if (target !== 'secretsmanager.GetSecretValue') {
        res.writeHead(400).end(JSON.stringify({ __type: 'InvalidRequestException', message: target }));
        return;
      }
      reads.set(id, (reads.get(id) ?? 0) + 1);
      const value = secrets.get(id);
      if (value === undefined) {
        res.writeHead(400).end(
          JSON.stringify({
            __type: 'ResourceNotFoundException',
            message: "Secrets Manager can't find the specified secret.",
          }),
        );
        return;
      }
      res.writeHead(200).end(
        JSON.stringify({
          ARN: `arn:aws:secretsmanager:us-east-1:000000000000:secret:${id}-AbCdEf`,
          Name: id,
          SecretString: value,
          VersionId: 'v1',
          VersionStages: ['AWSCURRENT'],
          CreatedDate: Date.now() / 1000,
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    secrets,
    reads,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
