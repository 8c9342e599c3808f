/** `wasm-mirror verify` given the agent's DIR/manifest.json, a bare payload, says so and names the file to pass. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signManifest, spkiToPem } from '../../shared/core/manifest/index.ts';
import { moduleEntry, newSigner, payloadOf } from '../manifest/helpers.ts';
import { runCli } from '../support/index.ts';

let work: string;
let keys: string;
let envelope: string;
let payload: string;

const cli = (...argv: string[]) => runCli(argv);

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'wm-verify-'));
  const signer = newSigner();
  keys = join(work, 'trusted.pem');
  writeFileSync(keys, spkiToPem(await signer.publicKeySpki()));
  // Valid for a day from now: the CLI checks expiry against the system clock.
  const signed = payloadOf([moduleEntry('ghcr.io/acme/basic-auth', new Uint8Array([0, 97, 115, 109]))], {
    version: 12,
    issuedAt: new Date(Date.now() - 60_000),
    ttlMs: 24 * 3600 * 1000,
  });
  envelope = join(work, '12.json');
  writeFileSync(envelope, (await signManifest(signed, signer)).bytes);
  // What the agent writes to DIR/manifest.json after verifying: the payload alone.
  payload = join(work, 'manifest.json');
  writeFileSync(payload, JSON.stringify(signed, null, 2));
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('wasm-mirror verify', () => {
  it('verifies the envelope', async () => {
    // Act
    const r = await cli('verify', envelope, '--trusted-keys', keys);
    // Assess
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out).version).toBe(12);
  });

  it("names the agent's payload file for what it is and says what to pass instead", async () => {
    // Act
    const r = await cli('verify', payload, '--trusted-keys', keys);
    // Assess
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toContain(`ENVELOPE_MALFORMED: ${payload} is a bare wasm-mirror.manifest/v1 payload`);
    expect(r.err).toContain("such as the agent's DIR/manifest.json");
    expect(r.err).toContain('not a signed envelope: it carries no signature to verify');
    expect(r.err).toContain('Pass the envelope it came from instead: <mirror>/manifests/12.json');
    expect(r.err).toContain('<mirror>/manifests/latest.json');
  });

  it('keeps the plain envelope error for other JSON', async () => {
    // Prepare
    const other = join(work, 'other.json');
    writeFileSync(other, '{"hello": "world"}');
    // Act
    const r = await cli('verify', other, '--trusted-keys', keys);
    // Assess
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ENVELOPE_MALFORMED: DSSE envelope: /);
    expect(r.err).not.toContain('bare');
  });

  it('says so in its help', async () => {
    // Act
    const r = await cli('verify', '--help');
    // Assess
    expect(r.out.replace(/\s+/g, ' ')).toContain(
      "The agent's DIR/manifest.json is not an envelope but the bare payload, with no signature left to verify",
    );
  });
});
