/**
 * What the registry-API suites share: raw HTTP requests (a path is sent exactly as written, so
 * `..` and `%2F` reach the server unresolved), skopeo runs, a CNCF Distribution registry started
 * as a pull-through cache of the mirror, and reading a module back out of a `skopeo copy` dir.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import type { Harness } from '../support/harness.ts';
import { freePort, killChild } from '../support/registry.ts';

export const sha256Hex = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One request with the path sent verbatim (fetch would resolve dot segments first). */
export function rawRequest(
  baseUrl: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path, headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The first error code of a registry error body. */
export function errorCode(res: RawResponse): string | undefined {
  try {
    return (JSON.parse(res.body.toString('utf8')) as { errors?: { code?: string }[] }).errors?.[0]?.code;
  } catch {
    return undefined;
  }
}

const execFileAsync = promisify(execFile);

/** skopeo with no user policy or auth files involved. */
export async function skopeo(args: string[]): Promise<string> {
  const home = mkdtempSync(join(tmpdir(), 'wm-skopeo-home-'));
  try {
    const { stdout } = await execFileAsync('skopeo', ['--insecure-policy', ...args], {
      env: { ...process.env, HOME: home },
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`skopeo ${args.join(' ')}: ${e.stderr ?? e.message}`);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

/** `skopeo copy docker://<host>/<ref> dir:<dir>` over plain http. */
export async function skopeoCopy(host: string, ref: string, dir: string): Promise<void> {
  await skopeo(['copy', '--quiet', '--src-tls-verify=false', `docker://${host}/${ref}`, `dir:${dir}`]);
}

interface DirManifest {
  mediaType?: string;
  config: { digest: string; mediaType: string };
  layers: { digest: string; mediaType: string }[];
}

export function readDirManifest(dir: string): { bytes: Buffer; json: DirManifest } {
  const bytes = readFileSync(join(dir, 'manifest.json'));
  return { bytes, json: JSON.parse(bytes.toString('utf8')) as DirManifest };
}

/**
 * The module in a `skopeo copy` dir, read the way Istio reads the image: a compat image's last
 * layer is a gzipped tar holding plugin.wasm, a Wasm artifact's module layer is the module.
 */
export function moduleFromDir(dir: string): Uint8Array {
  const { json } = readDirManifest(dir);
  const blob = (digest: string) => readFileSync(join(dir, digest.slice('sha256:'.length)));
  const wasm = json.layers.find((l) => l.mediaType === 'application/vnd.module.wasm.content.layer.v1+wasm');
  if (wasm !== undefined) return blob(wasm.digest);
  const tar = gunzipSync(blob(json.layers.at(-1)!.digest));
  for (let at = 0; at + 512 <= tar.length; ) {
    const header = tar.subarray(at, at + 512);
    const name = header.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    if (name === '') break;
    const size = Number.parseInt(header.subarray(124, 136).toString('utf8').replace(/\0.*$/s, '').trim(), 8);
    if (name.split('/').pop() === 'plugin.wasm') return tar.subarray(at + 512, at + 512 + size);
    at += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`no plugin.wasm in ${dir}`);
}

/** Queues a mirror job for a tag of the harness registry (its `local` source). */
export async function queueMirror(harness: Harness, repository: string, tag: string): Promise<void> {
  await harness.mirror.deps.mirrorQueue.send({
    sourceId: 'local',
    registry: harness.registry.host,
    repository,
    tag,
    receivedAt: new Date().toISOString(),
  });
}

export interface PullThroughCache {
  host: string;
  url: string;
  stop(): Promise<void>;
}

/**
 * The Debian `docker-registry` (CNCF Distribution) as a pull-through cache of `remoteUrl`, the
 * way an operator would put one in front of any registry.
 */
export async function startPullThroughCache(remoteUrl: string): Promise<PullThroughCache> {
  const dir = mkdtempSync(join(tmpdir(), 'wm-proxy-'));
  const port = await freePort();
  const config = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'storage')}`,
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
    'proxy:',
    `  remoteurl: ${remoteUrl}`,
  ];
  writeFileSync(join(dir, 'config.yml'), `${config.join('\n')}\n`);
  const child = spawn('docker-registry', ['serve', join(dir, 'config.yml')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await killChild(child);
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`docker-registry exited (${child.exitCode}): ${stderr}`);
    }
    try {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`docker-registry did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { host: `127.0.0.1:${port}`, url, stop };
}
