/**
 * The nodes of the last tree this browser verified for a mirror, kept in IndexedDB (one record
 * per mirror URL), so that a revisit requests only the nodes that changed since, as the agent
 * keeps the pins it walked between syncs. A kept node is trusted no more than a fetched one: it is
 * used only where a pin reached from the signed root names it, and is hashed and checked again
 * first; one that does not match its pin is fetched instead. Anything IndexedDB refuses (private
 * modes, quota, a blocked open) just means nothing is kept.
 */

const DB_NAME = 'wasm-mirror-status';
const STORE = 'trees';
/** An open that takes longer (another tab upgrading, a slow disk) is not waited for. */
const OPEN_TIMEOUT_MS = 2000;
/** A bigger tree (about 180,000 entries) is not kept: its revisits fetch it again. */
const MAX_KEPT_BYTES = 64 * 1024 * 1024;

export type NodeBytes = Map<string, Uint8Array<ArrayBuffer>>;

function done<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function open(): Promise<IDBDatabase> {
  const request = indexedDB.open(DB_NAME, 1);
  request.onupgradeneeded = () => request.result.createObjectStore(STORE);
  return Promise.race([
    done(request),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), OPEN_TIMEOUT_MS)),
  ]);
}

/** The nodes kept for `mirror` (sha256 to bytes), or none. */
export async function keptNodes(mirror: string): Promise<NodeBytes> {
  const out: NodeBytes = new Map();
  try {
    const db = await open();
    const value: unknown = await done(db.transaction(STORE).objectStore(STORE).get(mirror));
    db.close();
    if (value instanceof Map) {
      for (const [pin, bytes] of value) {
        if (typeof pin === 'string' && bytes instanceof Uint8Array)
          out.set(pin, bytes as Uint8Array<ArrayBuffer>);
      }
    }
  } catch {
    // Nothing kept: every node is fetched.
  }
  return out;
}

/** Replaces what is kept for `mirror` with the nodes of the tree just verified. */
export async function keepNodes(mirror: string, nodes: ReadonlyMap<string, Uint8Array>): Promise<void> {
  let total = 0;
  for (const bytes of nodes.values()) total += bytes.byteLength;
  if (total > MAX_KEPT_BYTES) return;
  try {
    const db = await open();
    const tx = db.transaction(STORE, 'readwrite');
    tx.objectStore(STORE).put(nodes, mirror);
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = tx.onabort = () => reject(tx.error);
    });
    db.close();
  } catch {
    // Not kept: the next visit fetches the tree again.
  }
}
