/**
 * A real CNCF Distribution registry (the Debian `docker-registry` binary) on 127.0.0.1 for
 * integration tests, with optional htpasswd or token auth and webhook notifications.
 *
 *   const reg = await startRegistry({ auth: 'token' });
 *   // reg.host = '127.0.0.1:PORT', reg.url = 'http://127.0.0.1:PORT', reg.username/password set
 *   await reg.stop();
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, createPrivateKey, randomBytes, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type RegistryAuth = 'none' | 'htpasswd' | 'token';

export interface StartRegistryOptions {
  auth?: RegistryAuth;
  /** Webhook endpoint the registry notifies on push/pull (Distribution `notifications.endpoints`). */
  notificationsUrl?: string;
  /** Sent as `Authorization: Bearer <token>` with each notification. */
  notificationsToken?: string;
  /** Token auth only: let requests without credentials pull (an anonymous token with pull scope). */
  anonymousPull?: boolean;
}

export interface TestRegistry {
  /** `127.0.0.1:PORT`, what a reference or a config `registry:` holds. */
  host: string;
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** Set for htpasswd and token auth. */
  username?: string;
  password?: string;
  /** Token auth only: the token server's realm URL and a count of tokens it issued. */
  tokenRealm?: string;
  tokensIssued?: () => number;
  /** Storage root (a temp dir removed by stop()). */
  storageDir: string;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (closed again before returning, so there is a small race). */
export async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const address = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  const auth = opts.auth ?? 'none';
  const dir = mkdtempSync(join(tmpdir(), 'wm-registry-'));
  const storageDir = join(dir, 'storage');
  const port = await freePort();
  const username = auth === 'none' ? undefined : 'tester';
  const password = auth === 'none' ? undefined : randomBytes(9).toString('base64url');
  let tokenServer: TokenServer | undefined;

  const lines = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storageDir}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
  ];
  if (auth === 'htpasswd') {
    const htpasswd = execFileSync('htpasswd', ['-nbB', username!, password!], { encoding: 'utf8' });
    writeFileSync(join(dir, 'htpasswd'), htpasswd);
    lines.push('auth:', '  htpasswd:', '    realm: wasm-mirror-test', `    path: ${join(dir, 'htpasswd')}`);
  } else if (auth === 'token') {
    tokenServer = await startTokenServer(dir, {
      username: username!,
      password: password!,
      anonymousPull: opts.anonymousPull ?? false,
    });
    lines.push(
      'auth:',
      '  token:',
      `    realm: ${tokenServer.realm}`,
      `    service: ${TOKEN_SERVICE}`,
      `    issuer: ${TOKEN_ISSUER}`,
      `    rootcertbundle: ${tokenServer.certPath}`,
    );
  }
  if (opts.notificationsUrl !== undefined) {
    lines.push(
      'notifications:',
      '  endpoints:',
      '    - name: wasm-mirror',
      `      url: ${opts.notificationsUrl}`,
      '      timeout: 2s',
      '      threshold: 3',
      '      backoff: 1s',
    );
    if (opts.notificationsToken !== undefined) {
      lines.push('      headers:', '        Authorization:', `          - Bearer ${opts.notificationsToken}`);
    }
  }
  const configPath = join(dir, 'config.yml');
  writeFileSync(configPath, `${lines.join('\n')}\n`);

  const child = spawn('docker-registry', ['serve', configPath], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  const cleanup = async () => {
    await killChild(child);
    await tokenServer?.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitUntilReady(`${url}/v2/`, child, () => stderr);
  } catch (err) {
    await cleanup();
    throw err;
  }
  const reg: TestRegistry = { host: `127.0.0.1:${port}`, url, storageDir, stop: cleanup };
  if (username !== undefined) reg.username = username;
  if (password !== undefined) reg.password = password;
  if (tokenServer !== undefined) {
    const ts = tokenServer;
    reg.tokenRealm = ts.realm;
    reg.tokensIssued = () => ts.issued;
  }
  return reg;
}

async function waitUntilReady(url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited (${child.exitCode}): ${stderr()}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not start: ${stderr()}`);
}

/** Kills a child by its pid and waits for it to exit. */
export async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------------
// Token server: the Docker token protocol (GET realm?service=&scope=, Basic credentials) issuing
// ES256 JWTs whose x5c chain is the self-signed certificate the registry trusts.

export const TOKEN_SERVICE = 'wasm-mirror-test-registry';
export const TOKEN_ISSUER = 'wasm-mirror-test-issuer';

interface TokenServer {
  realm: string;
  certPath: string;
  issued: number;
  stop(): Promise<void>;
}

async function startTokenServer(
  dir: string,
  opts: { username: string; password: string; anonymousPull: boolean },
): Promise<TokenServer> {
  const keyPath = join(dir, 'token.key');
  const certPath = join(dir, 'token.crt');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-days',
      '2',
      '-subj',
      '/CN=wasm-mirror-test-token',
    ],
    { stdio: 'ignore' },
  );
  const key = createPrivateKey(readFileSync(keyPath));
  const certPem = readFileSync(certPath, 'utf8');
  const certDer = Buffer.from(certPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const state = { issued: 0 };

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const header = req.headers.authorization ?? '';
    let authenticated = false;
    if (header.startsWith('Basic ')) {
      const [u, ...p] = Buffer.from(header.slice(6), 'base64').toString('utf8').split(':');
      if (u !== opts.username || p.join(':') !== opts.password) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
        return;
      }
      authenticated = true;
    }
    const access = url.searchParams
      .getAll('scope')
      .flatMap((s) => s.split(' '))
      .map((scope) => {
        const [type, ...rest] = scope.split(':');
        const actions = (rest.pop() ?? '').split(',');
        const granted = authenticated
          ? actions
          : opts.anonymousPull
            ? actions.filter((a) => a === 'pull')
            : [];
        return { type, name: rest.join(':'), actions: granted };
      });
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: TOKEN_ISSUER,
      sub: authenticated ? opts.username : '',
      aud: url.searchParams.get('service') ?? TOKEN_SERVICE,
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString('hex'),
      access,
    };
    const jwtHeader = { typ: 'JWT', alg: 'ES256', x5c: [certDer.toString('base64')] };
    const signingInput = `${b64url(JSON.stringify(jwtHeader))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' });
    const token = `${signingInput}.${signature.toString('base64url')}`;
    state.issued++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no token server port');
  return {
    realm: `http://127.0.0.1:${address.port}/token`,
    certPath,
    get issued() {
      return state.issued;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function b64url(text: string): string {
  return Buffer.from(text).toString('base64url');
}

/** Lowercase hex sha256 of some bytes. */
export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}
