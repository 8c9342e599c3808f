import { describe, expect, it } from 'vitest';
import type { MirrorJob } from '../../shared/core/domain.ts';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import { knownKey, reconcileSource } from '../../shared/core/pipeline/reconcile.ts';
import type { QueueProducer, RegistryTarget, SendOptions, WasmPuller } from '../../shared/core/ports.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import { source } from './helpers.ts';

const d = (c: string) => `sha256:${c.repeat(64)}`;
const NOW = new Date('2026-01-10T12:00:00Z');
const clock = { now: () => NOW };

/** A registry in memory: repository → tag → digest. */
function fakePuller(repos: Record<string, Record<string, string>>, failing: Set<string> = new Set()) {
  const calls = {
    listTags: [] as string[],
    resolve: [] as string[],
    targets: [] as Omit<RegistryTarget, 'reference'>[],
  };
  const puller: WasmPuller = {
    async pullToFile() {
      throw new Error('reconcile never pulls');
    },
    async listTags(target) {
      calls.listTags.push(target.repository);
      calls.targets.push(target);
      if (failing.has(target.repository))
        throw new WasmMirrorError('REGISTRY_UNAVAILABLE', 'down', { retryable: true });
      const tags = repos[target.repository];
      if (tags === undefined) throw new WasmMirrorError('NAME_UNKNOWN', 'no such repository');
      return Object.keys(tags);
    },
    async resolveDigest(target) {
      calls.resolve.push(`${target.repository}:${target.reference}`);
      if (failing.has(`${target.repository}:${target.reference}`))
        throw new WasmMirrorError('TIMEOUT', 'slow');
      const digest = repos[target.repository]?.[target.reference];
      if (digest === undefined) throw new WasmMirrorError('MANIFEST_UNKNOWN', 'gone');
      return digest;
    },
  };
  return { puller, calls };
}

function fakeQueue() {
  const sent: { job: MirrorJob; options?: SendOptions }[] = [];
  const queue: QueueProducer<MirrorJob> = {
    async send(job, options) {
      sent.push(options === undefined ? { job } : { job, options });
    },
  };
  return { queue, sent };
}

describe('reconcileSource', () => {
  const src = source('dockerhub', {
    registry: 'docker.io',
    repositories: ['meshplugins/basic-auth', 'meshplugins/jwt', 'meshplugins/*', 'plugins/**', 'Bad Name'],
  });

  it('queues jobs only for tags whose digest changed or that are new', async () => {
    // Prepare
    const { puller, calls } = fakePuller({
      'meshplugins/basic-auth': { '1.0.0': d('a'), latest: d('b'), '-invalid': d('c') },
      'meshplugins/jwt': { v1: d('d') },
    });
    const { queue, sent } = fakeQueue();
    const known = new Map([
      [knownKey('docker.io', 'meshplugins/basic-auth', '1.0.0'), d('a')],
      [knownKey('docker.io', 'meshplugins/basic-auth', 'latest'), d('0')],
    ]);
    // Act
    const result = await reconcileSource(src, {
      puller,
      queue,
      listKnown: async () => known,
      clock,
      logger: silentLogger,
    });
    // Assess
    expect(result.repositories).toEqual(['meshplugins/basic-auth', 'meshplugins/jwt']);
    expect(result.skippedGlobs).toEqual(['meshplugins/*', 'plugins/**']);
    expect(calls.listTags).toEqual(['meshplugins/basic-auth', 'meshplugins/jwt']);
    expect(calls.resolve).not.toContain('meshplugins/basic-auth:-invalid');
    expect(result.unchanged).toBe(1);
    expect(sent.map((s) => s.job)).toEqual([
      {
        sourceId: 'dockerhub-src',
        registry: 'docker.io',
        repository: 'meshplugins/basic-auth',
        tag: 'latest',
        digest: d('b'),
        deliveryId: `reconcile:${NOW.toISOString()}`,
        receivedAt: NOW.toISOString(),
      },
      expect.objectContaining({ repository: 'meshplugins/jwt', tag: 'v1', digest: d('d') }),
    ]);
    expect(sent[0]?.options?.dedupeId).toBe(`reconcile:docker.io/meshplugins/basic-auth:latest@${d('b')}`);
    expect(result.queued).toHaveLength(2);
  });

  it('passes the source registry, insecure flag and credentials to the puller', async () => {
    // Prepare
    const { puller, calls } = fakePuller({ 'plugins/x': { v1: d('e') } });
    const { queue } = fakeQueue();
    const local = source('distribution', { repositories: ['plugins/x'] });
    // Act
    await reconcileSource(local, {
      puller,
      queue,
      listKnown: async () => new Map(),
      clock,
      logger: silentLogger,
      credentials: { username: 'u', password: 'p' },
    });
    // Assess
    expect(calls.targets).toEqual([
      {
        registry: '127.0.0.1:5000',
        insecure: true,
        repository: 'plugins/x',
        credentials: { username: 'u', password: 'p' },
      },
    ]);
  });

  it('reads pull credentials through the secret source when none are given', async () => {
    // Prepare
    const { puller, calls } = fakePuller({ 'plugins/x': { v1: d('e') } });
    const { queue } = fakeQueue();
    const local = source('distribution', {
      repositories: ['plugins/x'],
      credentials: { usernameEnv: 'REG_USER', passwordEnv: 'REG_PASS' },
    });
    const secrets = { get: async (name: string) => ({ REG_USER: 'u', REG_PASS: 'p' })[name] };
    // Act
    await reconcileSource(local, {
      puller,
      queue,
      listKnown: async () => new Map(),
      clock,
      logger: silentLogger,
      secrets,
    });
    // Assess
    expect(calls.targets[0]?.credentials).toEqual({ username: 'u', password: 'p' });
    // Act / Assess: a secret that is not there.
    const missing = { get: async () => undefined };
    await expect(
      reconcileSource(local, {
        puller,
        queue,
        listKnown: async () => new Map(),
        clock,
        logger: silentLogger,
        secrets: missing,
      }),
    ).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });

  it('does not queue the same rejected digest again across runs when given lastQueued', async () => {
    // Prepare
    const { puller } = fakePuller({ 'plugins/x': { v1: d('e') } });
    const { queue, sent } = fakeQueue();
    const lastQueued = new Map<string, string>();
    const local = source('distribution', { repositories: ['plugins/x'] });
    const deps = { puller, queue, listKnown: async () => new Map(), clock, logger: silentLogger, lastQueued };
    // Act
    await reconcileSource(local, deps);
    await reconcileSource(local, deps);
    // Assess
    expect(sent).toHaveLength(1);
  });

  it('records failures per repository and per tag and carries on', async () => {
    // Prepare
    const { puller } = fakePuller(
      { 'plugins/up': { a: d('1'), b: d('2') }, 'plugins/down': {} },
      new Set(['plugins/down', 'plugins/up:a']),
    );
    const { queue, sent } = fakeQueue();
    const local = source('distribution', { repositories: ['plugins/down', 'plugins/up', 'plugins/missing'] });
    // Act
    const result = await reconcileSource(local, {
      puller,
      queue,
      listKnown: async () => new Map(),
      clock,
      logger: silentLogger,
    });
    // Assess
    expect(result.failures.map((f) => [f.repository, f.tag, f.code])).toEqual([
      ['plugins/down', undefined, 'REGISTRY_UNAVAILABLE'],
      ['plugins/up', 'a', 'TIMEOUT'],
      ['plugins/missing', undefined, 'NAME_UNKNOWN'],
    ]);
    expect(sent.map((s) => s.job.tag)).toEqual(['b']);
  });

  it('caps the tags checked per repository and honours abort', async () => {
    // Prepare
    const many = Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`t${i}`, d('f')]));
    const { puller, calls } = fakePuller({ 'plugins/x': many });
    const { queue } = fakeQueue();
    const local = source('distribution', { repositories: ['plugins/x'] });
    // Act
    const result = await reconcileSource(local, {
      puller,
      queue,
      listKnown: async () => new Map(),
      clock,
      logger: silentLogger,
      maxTagsPerRepository: 10,
    });
    // Assess
    expect(result.tagsSeen).toBe(10);
    expect(calls.resolve).toHaveLength(10);

    // Prepare: an aborted run.
    const aborted = new AbortController();
    aborted.abort();
    // Act
    const none = await reconcileSource(local, {
      puller,
      queue,
      listKnown: async () => new Map(),
      clock,
      logger: silentLogger,
      signal: aborted.signal,
    });
    // Assess
    expect(none.queued).toEqual([]);
  });

  it('does nothing for a source with only wildcard repositories', async () => {
    // Prepare
    const { puller, calls } = fakePuller({});
    const { queue, sent } = fakeQueue();
    // Act
    const result = await reconcileSource(source('quay', { repositories: ['mesh/**'] }), {
      puller,
      queue,
      listKnown: async () => {
        throw new Error('not needed');
      },
      clock,
      logger: silentLogger,
    });
    // Assess
    expect(result.skippedGlobs).toEqual(['mesh/**']);
    expect(calls.listTags).toEqual([]);
    expect(sent).toEqual([]);
  });

  it('refuses a digest the registry reports that is not a sha256 digest', async () => {
    // Prepare
    const { puller } = fakePuller({ 'plugins/x': { v1: 'md5:abc' } });
    const { queue, sent } = fakeQueue();
    // Act
    const result = await reconcileSource(source('distribution', { repositories: ['plugins/x'] }), {
      puller,
      queue,
      listKnown: async () => new Map(),
      clock,
      logger: silentLogger,
    });
    // Assess
    expect(sent).toEqual([]);
    expect(result.failures).toHaveLength(1);
  });
});
