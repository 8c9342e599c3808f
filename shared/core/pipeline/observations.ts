/**
 * A tag never moves back. Each record says when the registry confirmed its tag at its digest
 * (`observedAt`); the publisher keeps, per (name, tag), the newest observation it has admitted
 * and drops records about older ones, whatever order queues deliver in: a late push, a retry, a
 * message re-driven from the dead-letter queue. The listed entry's `mirroredAt` is its
 * observation; a later re-observation of the same digest (nothing to re-list) is kept in a note
 * (`state/tags/…`, written only by the publisher, before the manifest that depends on it).
 */
import type { ManifestModule, ModuleRecord } from '../domain.ts';
import { metricNames } from '../metrics.ts';
import type { Logger, Metrics, ObjectStore } from '../ports.ts';
import { storageKeys } from '../storage-keys.ts';
import { entryKey } from './state.ts';

interface TagObservation {
  ociDigest: string;
  observedAt: string;
}

export interface ObservationDeps {
  store: ObjectStore;
  logger: Logger;
  metrics: Metrics;
}

/** When a record's observation happened; records from earlier versions only have mirroredAt. */
export const observedAtOf = (r: Pick<ModuleRecord, 'observedAt' | 'mirroredAt'>): number =>
  Date.parse(r.observedAt ?? r.mirroredAt);

/**
 * The records to fold into the next manifest: for each tag, the newest record if it is not
 * older than the newest observation admitted before (ties keep what was admitted). Digest-only
 * records (no tag) are not ordered and pass through. Observations are persisted here.
 */
export async function admitNewest(
  deps: ObservationDeps,
  records: readonly ModuleRecord[],
  listedEntry: (name: string, tag: string) => Promise<ManifestModule | undefined>,
): Promise<ModuleRecord[]> {
  const admitted: ModuleRecord[] = [];
  const newestByTag = new Map<string, ModuleRecord>();
  let stale = 0;
  for (const r of records) {
    if (r.tag === '') {
      admitted.push(r);
      continue;
    }
    const key = entryKey(r.name, r.tag);
    const seen = newestByTag.get(key);
    if (seen === undefined || observedAtOf(r) >= observedAtOf(seen)) {
      if (seen !== undefined) stale++;
      newestByTag.set(key, r);
    } else stale++;
  }
  for (const record of newestByTag.values()) {
    const storeKey = storageKeys.tagObservation(record.name, record.tag);
    const listed = await listedEntry(record.name, record.tag);
    const note = await readObservation(deps.store, storeKey);
    const baseline = newer(fromListed(listed), note);
    const at = observedAtOf(record);
    if (baseline !== undefined) {
      const before = Date.parse(baseline.observedAt);
      const olderThanKnown = at < before || (at === before && baseline.ociDigest !== record.ociDigest);
      if (olderThanKnown) {
        stale++;
        deps.logger.warn('record about an older observation of its tag ignored', {
          name: record.name,
          tag: record.tag,
          ociDigest: record.ociDigest,
          observedAt: new Date(at).toISOString(),
          newest: baseline,
        });
        continue;
      }
    }
    // The listed digest seen again: the manifest will not change, so the note carries the time.
    if (listed?.ociDigest === record.ociDigest && at > Date.parse(baseline?.observedAt ?? '')) {
      const observation: TagObservation = {
        ociDigest: record.ociDigest,
        observedAt: new Date(at).toISOString(),
      };
      await deps.store.put(storeKey, Buffer.from(JSON.stringify(observation)), {
        contentType: 'application/json',
      });
    }
    admitted.push(record);
  }
  if (stale > 0) deps.metrics.count(metricNames.publishRecordsStale, {}, stale);
  return admitted;
}

function newer(a: TagObservation | undefined, b: TagObservation | undefined): TagObservation | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Date.parse(b.observedAt) > Date.parse(a.observedAt) ? b : a;
}

function fromListed(entry: ManifestModule | undefined): TagObservation | undefined {
  return entry === undefined ? undefined : { ociDigest: entry.ociDigest, observedAt: entry.mirroredAt };
}

/** The publisher's own note; unreadable counts as absent (the listed entry then stands in). */
async function readObservation(store: ObjectStore, key: string): Promise<TagObservation | undefined> {
  const found = await store.getBytes(key, 4096);
  if (found === undefined) return undefined;
  try {
    const value = JSON.parse(Buffer.from(found.bytes).toString('utf8')) as Partial<TagObservation>;
    if (typeof value.ociDigest !== 'string' || Number.isNaN(Date.parse(String(value.observedAt))))
      return undefined;
    return { ociDigest: value.ociDigest, observedAt: String(value.observedAt) };
  } catch {
    return undefined;
  }
}
