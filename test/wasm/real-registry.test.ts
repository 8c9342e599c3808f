/**
 * Every packaging the mirror reads, pushed with skopeo to the real CNCF Distribution
 * registry (anonymous, htpasswd and token auth) and pulled back byte-exact.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isWasmMirrorError } from '../../shared/core/errors.ts';
import type { RegistryTarget } from '../../shared/core/ports.ts';
import { OciWasmPuller } from '../../shared/core/wasm/puller.ts';
import {
  minimalComponent,
  type PushFormat,
  proxyWasmModule,
  pushWasm,
  type RegistryAuth,
  startRegistry,
  type TestRegistry,
} from '../support/index.ts';

const formats: { push: PushFormat; expected: string }[] = [
  { push: 'wasm-artifact', expected: 'wasm-artifact' },
  { push: 'wasm-artifact-1layer', expected: 'wasm-artifact-1layer' },
  { push: 'compat-oci', expected: 'compat-image' },
  { push: 'compat-docker', expected: 'compat-image' },
  { push: 'cncf-wasm', expected: 'cncf-wasm' },
  { push: 'index', expected: 'wasm-artifact' },
];

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe.each<RegistryAuth>(['none', 'htpasswd', 'token'])('real registry, auth %s', (auth) => {
  let reg: TestRegistry;
  let dir: string;
  const module = proxyWasmModule({ marker: `auth-${auth}` });

  beforeAll(async () => {
    reg = await startRegistry({ auth });
    dir = mkdtempSync(join(tmpdir(), 'wm-pull-'));
  });
  afterAll(async () => {
    await reg?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const target = (repository: string, reference: string, withCredentials = true): RegistryTarget => {
    const t: RegistryTarget = { registry: reg.host, repository, reference, insecure: true };
    if (withCredentials && reg.username !== undefined)
      t.credentials = { username: reg.username, password: reg.password! };
    return t;
  };
  const credentials = () =>
    reg.username === undefined ? {} : { credentials: { username: reg.username, password: reg.password! } };

  it.each(formats)('pulls $push back byte-exact', async ({ push, expected }) => {
    // Prepare
    const { digest } = await pushWasm(reg.host, `plugins/${push}:v1`, module, push, credentials());
    const puller = new OciWasmPuller();
    const dest = join(dir, `${push}.wasm`);
    // Act
    const pulled = await puller.pullToFile(target(`plugins/${push}`, 'v1'), dest);
    // Assess
    expect(new Uint8Array(readFileSync(dest))).toEqual(module);
    expect(pulled).toEqual({
      ociDigest: digest,
      sha256: sha256(module),
      size: module.length,
      format: expected,
      kind: 'module',
      abi: 'proxy_abi_version_0_2_1',
    });
    // Act / Assess: by digest too, and resolveDigest agrees with what skopeo pushed.
    expect(await puller.resolveDigest(target(`plugins/${push}`, 'v1'))).toBe(digest);
    const byDigest = await puller.pullToFile(target(`plugins/${push}`, digest), dest);
    expect(byDigest.sha256).toBe(sha256(module));
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('resolves an index of a compat image to that image', async () => {
    // Prepare
    const { digest } = await pushWasm(reg.host, 'plugins/index-compat:v1', module, 'index', {
      ...credentials(),
      indexOf: 'compat-oci',
    });
    const dest = join(dir, 'index-compat.wasm');
    // Act
    const pulled = await new OciWasmPuller().pullToFile(target('plugins/index-compat', 'v1'), dest);
    // Assess
    expect(pulled).toMatchObject({ ociDigest: digest, format: 'compat-image', size: module.length });
    expect(new Uint8Array(readFileSync(dest))).toEqual(module);
  });

  it('reports a component as such', async () => {
    // Prepare
    const component = minimalComponent();
    await pushWasm(reg.host, 'plugins/component:v1', component, 'cncf-wasm', credentials());
    const dest = join(dir, 'component.wasm');
    // Act
    const pulled = await new OciWasmPuller().pullToFile(target('plugins/component', 'v1'), dest);
    // Assess
    expect(pulled.kind).toBe('component');
    expect(pulled.abi).toBeUndefined();
    expect(new Uint8Array(readFileSync(dest))).toEqual(component);
  });

  it('lists tags', async () => {
    // Prepare
    await pushWasm(reg.host, 'plugins/tags:a', module, 'wasm-artifact', credentials());
    await pushWasm(reg.host, 'plugins/tags:b', module, 'wasm-artifact', credentials());
    // Act / Assess
    expect((await new OciWasmPuller().listTags(target('plugins/tags', ''))).sort()).toEqual(['a', 'b']);
  });

  it('answers MANIFEST_UNKNOWN for a missing tag, NAME_UNKNOWN for a missing repository', async () => {
    // Prepare
    await pushWasm(reg.host, 'plugins/missing:v1', module, 'wasm-artifact', credentials());
    // Act / Assess
    const err = await new OciWasmPuller()
      .pullToFile(target('plugins/missing', 'nope'), join(dir, 'missing.wasm'))
      .catch((e: unknown) => e);
    expect(isWasmMirrorError(err) && err.code).toBe('MANIFEST_UNKNOWN');
    // Distribution answers MANIFEST_UNKNOWN for a manifest of an unknown repository, NAME_UNKNOWN for its tags.
    const noRepo = await new OciWasmPuller()
      .pullToFile(target('plugins/never-pushed', 'v1'), join(dir, 'missing.wasm'))
      .catch((e: unknown) => e);
    expect(isWasmMirrorError(noRepo) && noRepo.code).toBe('MANIFEST_UNKNOWN');
    const noTags = await new OciWasmPuller()
      .listTags(target('plugins/never-pushed', ''))
      .catch((e: unknown) => e);
    expect(isWasmMirrorError(noTags) && noTags.code).toBe('NAME_UNKNOWN');
  });

  if (auth !== 'none') {
    it('answers UNAUTHORIZED with wrong credentials, and without any', async () => {
      // Prepare
      await pushWasm(reg.host, 'plugins/private:v1', module, 'wasm-artifact', credentials());
      const wrong = {
        ...target('plugins/private', 'v1'),
        credentials: { username: 'tester', password: 'wrong' },
      };
      // Act / Assess
      const err1 = await new OciWasmPuller().pullToFile(wrong, join(dir, 'x.wasm')).catch((e: unknown) => e);
      expect(isWasmMirrorError(err1) && err1.code).toBe('UNAUTHORIZED');
      const err2 = await new OciWasmPuller()
        .pullToFile(target('plugins/private', 'v1', false), join(dir, 'y.wasm'))
        .catch((e: unknown) => e);
      expect(isWasmMirrorError(err2) && err2.code).toBe('UNAUTHORIZED');
      expect(readdirSync(dir).filter((f) => f === 'x.wasm' || f === 'y.wasm' || f.endsWith('.tmp'))).toEqual(
        [],
      );
    });
  }

  if (auth === 'token') {
    it('caches the token per host and scope', async () => {
      // Prepare
      await pushWasm(reg.host, 'plugins/cached:v1', module, 'wasm-artifact', credentials());
      const puller = new OciWasmPuller();
      const before = reg.tokensIssued!();
      // Act
      await puller.pullToFile(target('plugins/cached', 'v1'), join(dir, 'c1.wasm'));
      await puller.pullToFile(target('plugins/cached', 'v1'), join(dir, 'c2.wasm'));
      // Assess
      expect(reg.tokensIssued!() - before).toBe(1);
    });
  }
});
