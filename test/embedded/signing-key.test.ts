/**
 * The embedded mirror and its signing key across restarts. A key that was deleted or swapped
 * must stop the start with a reason, not be replaced by a new key appended to keys.json (agents
 * would then refuse every new manifest with no hint why). A rotation is an explicit choice.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateKeyPairPem, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE } from '../../shared/adapters/local/signer.ts';
import { main } from '../../shared/cli/main.ts';
import { defaultConfig } from '../../shared/core/config.ts';
import { isWasmMirrorError } from '../../shared/core/errors.ts';
import { loadTrustedKeys, verifyManifest } from '../../shared/core/manifest/index.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import { type EmbeddedMirror, startEmbedded } from '../../shared/embedded/runtime.ts';
import { waitForManifest } from '../support/mirror.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'wasm-mirror.mjs');

let dir: string;
let keyFile: string;
let pubFile: string;
let keysJson: string;
const running: EmbeddedMirror[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'wm-key-restart-'));
  keyFile = join(dir, 'private', PRIVATE_KEY_FILE);
  pubFile = join(dir, 'private', PUBLIC_KEY_FILE);
  keysJson = join(dir, 'keys.json');
});
afterEach(async () => {
  for (const m of running.splice(0)) await m.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function start(options: { rotateKey?: boolean } = {}): Promise<EmbeddedMirror> {
  const mirror = await startEmbedded({
    config: defaultConfig(),
    dataDir: dir,
    port: 0,
    env: {},
    logger: silentLogger,
    ...options,
  });
  running.push(mirror);
  return mirror;
}

async function stop(mirror: EmbeddedMirror): Promise<void> {
  running.splice(running.indexOf(mirror), 1);
  await mirror.stop();
}

async function refusedWith(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    if (isWasmMirrorError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('the mirror started');
}

const listedKeyIds = () => loadTrustedKeys(readFileSync(keysJson, 'utf8')).map((k) => k.keyid);
const publicFileKeyId = () => loadTrustedKeys(readFileSync(pubFile, 'utf8'))[0]!.keyid;

/** A first start on an empty data directory: it creates the key and publishes version 1. */
async function firstStart(): Promise<string> {
  const mirror = await start();
  await waitForManifest(mirror.url, (p) => p.version >= 1);
  const keyid = await mirror.deps.signer.keyId();
  await stop(mirror);
  expect(listedKeyIds()).toEqual([keyid]);
  expect(publicFileKeyId()).toBe(keyid);
  return keyid;
}

describe('the embedded signing key across restarts', () => {
  it('refuses to start when the key that signed the manifests was deleted; keys.json stays as it was', async () => {
    // Prepare
    const keyid = await firstStart();
    const keysBefore = readFileSync(keysJson, 'utf8');
    unlinkSync(keyFile);
    // Act
    const r = await refusedWith(start());
    // Assess
    expect(r.code).toBe('KEY_MISSING');
    expect(r.message).toContain(keyFile);
    expect(r.message).toContain(keyid);
    expect(r.message).toContain('--rotate-key');
    expect(readFileSync(keysJson, 'utf8')).toBe(keysBefore);
    // Refused again on the next attempt: nothing was created behind the operator's back.
    expect((await refusedWith(start())).code).toBe('KEY_MISSING');
  });

  it('rotates to a new key only when asked: keys.json lists both, the public file follows, new manifests use it', async () => {
    // Prepare
    const old = await firstStart();
    unlinkSync(keyFile);
    // Act
    const mirror = await start({ rotateKey: true });
    const next = await mirror.deps.signer.keyId();
    // Assess
    expect(next).not.toBe(old);
    expect(listedKeyIds()).toEqual([old, next]);
    expect(publicFileKeyId()).toBe(next);
    // Act / Assess: new manifests are signed with the new key.
    await mirror.deps.publishQueue.send({ kind: 'resign', reason: 'manual' });
    const latest = await waitForManifest(mirror.url, (p) => p.version >= 2);
    const trustedKeys = loadTrustedKeys(readFileSync(keysJson, 'utf8'));
    expect(verifyManifest(latest.bytes, { trustedKeys, now: new Date() }).keyid).toBe(next);
    await stop(mirror);
    // Act / Assess: once rotated, an ordinary restart keeps the new key.
    const again = await start();
    expect(await again.deps.signer.keyId()).toBe(next);
  });

  it('refuses a key file replaced by another key', async () => {
    // Prepare
    const old = await firstStart();
    writeFileSync(keyFile, generateKeyPairPem().privateKeyPem, { mode: 0o600 });
    unlinkSync(pubFile);
    // Act
    const r = await refusedWith(start());
    // Assess
    expect(r.code).toBe('KEY_MISMATCH');
    expect(r.message).toContain(keyFile);
    expect(r.message).toContain(old);
    expect(listedKeyIds()).toEqual([old]);
  });

  it('refuses a public key file that does not match the private key', async () => {
    // Prepare
    await firstStart();
    const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    writeFileSync(pubFile, stranger.export({ format: 'pem', type: 'spki' }));
    // Act
    const r = await refusedWith(start());
    // Assess
    expect(r.code).toBe('KEY_MISMATCH');
    expect(r.message).toContain(pubFile);
  });
});

describe('wasm-mirror serve and the signing key', () => {
  const io = () => {
    const out = { stdout: '', stderr: '' };
    return {
      out,
      io: {
        stdout: { write: (c: string) => (out.stdout += c) },
        stderr: { write: (c: string) => (out.stderr += c) },
        stdin: (async function* () {})(),
        env: {},
      },
    };
  };

  it('documents --rotate-key and exits 1 with KEY_MISSING when the key is gone', async () => {
    // Act / Assess: the help documents the option.
    const help = io();
    expect(await main(['serve', '--help'], help.io)).toBe(0);
    expect(help.out.stdout).toMatch(/^ {2}--rotate-key {2}\S.*$/m);
    // Prepare: the key is gone.
    await firstStart();
    unlinkSync(keyFile);
    const failed = io();
    // Act / Assess
    expect(await main(['serve', '--data', dir, '--port', '0'], failed.io)).toBe(1);
    expect(failed.out.stderr).toContain('KEY_MISSING');
    expect(failed.out.stderr).toContain(keyFile);
  });

  it('starts with --rotate-key after the key was lost', async () => {
    // Prepare
    const old = await firstStart();
    unlinkSync(keyFile);
    // Act
    const child = spawn(process.execPath, [BIN, 'serve', '--rotate-key', '--data', dir, '--port', '0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: dir,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await expect
        .poll(() => stdout + (child.exitCode === null ? '' : `exited: ${stderr}`), { timeout: 20_000 })
        .toContain('is serving');
    } finally {
      child.kill('SIGTERM');
    }
    // Assess
    expect(await exited).toBe(0);
    expect(listedKeyIds()).toHaveLength(2);
    expect(listedKeyIds()[0]).toBe(old);
    expect(publicFileKeyId()).toBe(listedKeyIds()[1]);
  }, 30_000);
});
