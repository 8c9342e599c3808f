import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskQueue } from '../../shared/adapters/local/disk-queue.ts';
import { parseConfig } from '../../shared/core/config.ts';
import type { MirrorJob } from '../../shared/core/domain.ts';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import type { OciWasmPuller } from '../../shared/core/wasm/puller.ts';
import { dataPaths, startEmbedded } from '../../shared/embedded/runtime.ts';
import { runBin } from '../support/cli.ts';
import { pushWasm, startRegistry, type TestRegistry } from '../support/index.ts';
import { sha256Of, waitForManifest } from '../support/mirror.ts';
import { proxyWasmModule } from '../support/wasm.ts';

const cli = runBin;

function job(repository: string, registry = 'registry.example'): MirrorJob {
  return { sourceId: 'local', registry, repository, tag: '1.0', receivedAt: new Date().toISOString() };
}

/** Dead letters as the server leaves them: each job failed its only delivery. */
async function makeDeadLetters(dataDir: string, repositories: string[]): Promise<string[]> {
  const queue = new DiskQueue<MirrorJob>({
    dir: dataPaths(dataDir).mirrorQueue,
    maxAttempts: 1,
    pollIntervalMs: 10,
  });
  for (const repository of repositories) await queue.send(job(repository));
  queue.start(async () => {
    throw new WasmMirrorError('REGISTRY_UNAVAILABLE', 'connection refused', { retryable: true });
  });
  const deadline = Date.now() + 20_000;
  while ((await queue.depth()).dead < repositories.length) {
    if (Date.now() > deadline) throw new Error('dead letters never appeared');
    await new Promise((r) => setTimeout(r, 20));
  }
  await queue.stop();
  return queue.deadLetterIds();
}

describe('wasm-mirror dead-letters', () => {
  let root: string;

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'wm-cli-dead-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('lists newest first, a page at a time, and shows one in full', async () => {
    // Prepare
    const data = join(root, 'list');
    const ids = await makeDeadLetters(data, ['plugins/a', 'plugins/b', 'plugins/c']);

    // Act
    const [text, first, shown] = await Promise.all([
      cli(['dead-letters', 'list', '--data', data]),
      cli(['dead-letters', 'list', '--data', data, '--limit', '2', '--json']),
      cli(['dead-letters', 'show', ids[1]!, '--data', data]),
    ]);
    const firstPage = JSON.parse(first.stdout) as {
      total: number;
      items: { messageId: string }[];
      next: string;
    };
    const second = await cli([
      'dead-letters',
      'list',
      '--data',
      data,
      '--limit',
      '2',
      '--cursor',
      firstPage.next,
      '--json',
    ]);

    // Assess
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^mirror queue: 3 dead letters, newest first\n/);
    const lines = text.stdout.trim().split('\n').slice(1);
    expect(lines.map((l) => l.split(' ')[0])).toEqual([ids[2], ids[1], ids[0]]);
    expect(lines[0]).toContain(
      '1 deliveries  REGISTRY_UNAVAILABLE  registry.example/plugins/c:1.0: connection refused',
    );
    expect(firstPage.total).toBe(3);
    expect(firstPage.items.map((d) => d.messageId)).toEqual([ids[2], ids[1]]);
    expect(JSON.parse(second.stdout)).toMatchObject({ items: [{ messageId: ids[0] }], next: null });
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({
      messageId: ids[1],
      body: { repository: 'plugins/b' },
      attempts: 1,
      lastError: { code: 'REGISTRY_UNAVAILABLE' },
    });
  });

  it('purges by id, by age and all; redrives all back onto the queue', async () => {
    // Prepare
    const data = join(root, 'purge');
    const ids = await makeDeadLetters(data, ['plugins/a', 'plugins/b', 'plugins/c', 'plugins/d']);
    const queue = new DiskQueue<MirrorJob>({ dir: dataPaths(data).mirrorQueue });

    // Act
    const byId = await cli(['dead-letters', 'purge', ids[0]!, '--data', data]);
    const byAge = await cli(['dead-letters', 'purge', '--older-than', '1h', '--data', data, '--json']);
    const redriven = await cli(['dead-letters', 'redrive', '--all', '--data', data, '--json']);
    const afterRedrive = await queue.depth();
    const purgedNothing = await cli(['dead-letters', 'purge', '--all', '--data', data]);

    // Assess
    expect(byId.stdout).toBe('1 dead letter deleted from the mirror queue\n');
    expect(JSON.parse(byAge.stdout)).toEqual({ queue: 'mirror', purged: 0, missing: [] });
    expect(JSON.parse(redriven.stdout)).toEqual({ queue: 'mirror', redriven: ids.slice(1), missing: [] });
    expect(afterRedrive).toMatchObject({ ready: 3, dead: 0 });
    expect(purgedNothing.stdout).toBe('0 dead letters deleted from the mirror queue\n');
  });

  it('fails with stable codes: NOT_FOUND for what is not there, USAGE for bad usage', async () => {
    // Prepare
    const data = join(root, 'errors');
    const [id] = await makeDeadLetters(data, ['plugins/a']);
    const unknown = '000000000000001-00000000-000000';

    // Act
    const usageCases: string[][] = [
      ['list', '--queue', 'other'],
      ['show', '../../keys'],
      ['redrive'],
      ['purge', id!, '--all'],
      ['purge', '--older-than', 'soon'],
      ['list', '--limit', '0'],
      ['list', '--all'],
      [],
    ];
    const onData = (args: string[]) => cli(['dead-letters', ...args, '--data', data]);
    const [showUnknown, redriveSome, noDataDir, ...usageResults] = await Promise.all([
      onData(['show', unknown]),
      onData(['redrive', id!, unknown]),
      cli(['dead-letters', 'list', '--data', join(root, 'nowhere')]),
      ...usageCases.map(onData),
    ]);

    // Assess
    expect(showUnknown!.code).toBe(1);
    expect(showUnknown!.stderr).toMatch(/^wasm-mirror dead-letters: NOT_FOUND: no dead letter 0+1-/);
    // The one that exists is redriven; the command still fails for the other.
    expect(redriveSome!.code).toBe(1);
    expect(redriveSome!.stdout).toContain(`redriven ${id}`);
    expect(redriveSome!.stderr).toContain(`NOT_FOUND: no dead letter ${unknown}`);
    expect(noDataDir!.code).toBe(1);
    expect(noDataDir!.stderr).toContain('NOT_FOUND');
    for (const [i, result] of usageResults.entries()) {
      const args = usageCases[i]!.join(' ');
      expect(result.code, `${args}: ${result.stderr}`).toBe(2);
      expect(result.stderr, args).toMatch(/^wasm-mirror dead-letters: USAGE: /);
    }
  });

  it('--help explains every flag and action', async () => {
    // Act
    const help = await cli(['dead-letters', '--help']);
    const top = await cli(['--help']);

    // Assess
    expect(help.code).toBe(0);
    for (const word of [
      'list',
      'show',
      'redrive',
      'purge',
      '--data',
      '--queue',
      '--limit',
      '--cursor',
      '--all',
      '--older-than',
      '--json',
      '--help',
    ]) {
      expect(help.stdout).toContain(word);
    }
    expect(top.stdout).toMatch(/dead-letters\s+list, show, redrive or purge/);
  });

  describe('beside a running server', () => {
    let registry: TestRegistry;
    const module = proxyWasmModule({ marker: 'redriven by the operator' });

    beforeAll(async () => {
      registry = await startRegistry();
      await pushWasm(registry.host, 'plugins/redriven:1.0', module, 'wasm-artifact');
    });
    afterAll(() => registry?.stop());

    it('a redriven job is picked up by the server and mirrored', async () => {
      // Prepare: the registry looks down to the server until the job is dead-lettered.
      const data = join(root, 'server');
      const config = parseConfig(
        `mirror: { name: cli-dead }\nsources:\n  - { id: local, type: distribution, registry: "${registry.host}", insecure: true, repositories: ["plugins/**"], webhookSecretEnv: HOOK_TOKEN }\n`,
      );
      const server = await startEmbedded({
        config,
        dataDir: data,
        port: 0,
        env: { HOOK_TOKEN: 'cli-dead-token-000000000001' },
        logger: silentLogger,
        retry: { maxAttempts: 2, backoffBaseMs: 20 },
      });
      try {
        const puller = server.deps.puller as OciWasmPuller;
        const resolveDigest = puller.resolveDigest.bind(puller);
        let down = true;
        puller.resolveDigest = async (...args) => {
          if (down)
            throw new WasmMirrorError('REGISTRY_UNAVAILABLE', 'connection refused', { retryable: true });
          return resolveDigest(...args);
        };
        await server.deps.mirrorQueue.send(job('plugins/redriven', registry.host));
        let listed = '';
        const deadline = Date.now() + 20_000;
        while (!listed.includes('plugins/redriven')) {
          if (Date.now() > deadline) throw new Error('the job was never dead-lettered');
          listed = (await cli(['dead-letters', 'list', '--data', data])).stdout;
        }
        const id = listed.split('\n')[1]!.split(' ')[0]!;
        down = false;

        // Act
        const redriven = await cli(['dead-letters', 'redrive', id, '--data', data]);
        const manifest = await waitForManifest(server.url, (p) =>
          p.modules.some((m) => m.name === `${registry.host}/plugins/redriven`),
        );
        const after = await cli(['dead-letters', 'list', '--data', data, '--json']);

        // Assess
        expect(redriven.code, redriven.stderr).toBe(0);
        expect(redriven.stdout).toBe(`redriven ${id}\n1 dead letter back on the mirror queue\n`);
        expect(manifest.payload.modules.find((m) => m.name.endsWith('plugins/redriven'))?.sha256).toBe(
          sha256Of(module),
        );
        expect(JSON.parse(after.stdout)).toMatchObject({ total: 0, items: [] });
      } finally {
        await server.stop();
      }
    });
  });
});
