/**
 * Deleting module bytes no manifest lists any more, safely: an agent may hold any manifest until
 * it expires, so a module leaves storage only after it has been unlisted for longer than a
 * manifest lives (`manifestTtl`) plus a grace period. The first pass that finds a module
 * unlisted notes the time (`state/unlisted/<sha256>`); a later pass deletes it once that time is
 * old enough and it is still unlisted. A module listed again loses its note.
 */
import { metricNames } from '../metrics.ts';
import type { Clock, Logger, Metrics, ObjectStore } from '../ports.ts';
import { statePrefixes, storageKeys } from '../storage-keys.ts';
import { listAllEntries } from './state.ts';

export interface GarbageDeps {
  store: ObjectStore;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  config: { mirror: { manifestTtlMs: number; gcGraceMs: number } };
}

export interface GarbageResult {
  listed: number;
  noted: number;
  deleted: number;
}

const MODULE_KEY = /^modules\/sha256\/([0-9a-f]{64})\.wasm$/;

export async function collectGarbage(deps: GarbageDeps): Promise<GarbageResult> {
  const now = deps.clock.now().getTime();
  const listed = new Set((await listAllEntries(deps.store)).map((m) => m.sha256));
  const noted = new Map<string, number>();
  for await (const note of deps.store.list(statePrefixes.unlisted)) {
    const sha = note.key.slice(statePrefixes.unlisted.length);
    const found = await deps.store.getBytes(note.key, 1024);
    const since = Date.parse(found === undefined ? '' : Buffer.from(found.bytes).toString('utf8').trim());
    noted.set(sha, Number.isNaN(since) ? now : since);
  }
  const result: GarbageResult = { listed: listed.size, noted: 0, deleted: 0 };
  const keepFor = deps.config.mirror.manifestTtlMs + deps.config.mirror.gcGraceMs;
  for await (const object of deps.store.list('modules/sha256/')) {
    const sha = MODULE_KEY.exec(object.key)?.[1];
    if (sha === undefined) continue;
    const since = noted.get(sha);
    noted.delete(sha);
    if (listed.has(sha)) {
      if (since !== undefined) await deps.store.delete(storageKeys.unlistedNote(sha));
      continue;
    }
    if (since === undefined) {
      await deps.store.put(storageKeys.unlistedNote(sha), Buffer.from(new Date(now).toISOString()), {
        contentType: 'text/plain',
      });
      result.noted++;
    } else if (now - since > keepFor) {
      await deps.store.delete(object.key);
      await deps.store.delete(storageKeys.unlistedNote(sha));
      result.deleted++;
    }
  }
  // Notes for modules already gone.
  for (const sha of noted.keys()) await deps.store.delete(storageKeys.unlistedNote(sha));
  if (result.deleted > 0) deps.metrics.count(metricNames.modulesDeleted, {}, result.deleted);
  deps.logger.info('garbage collected', { ...result });
  return result;
}
