/**
 * The documents an agent keeps to serve them (--serve), laid out under its directory as the
 * mirror lays them out, byte for byte as received (decoded: the bytes the mirror stores and the
 * signatures and pins cover):
 *
 *   DIR/manifests/v2/index.json               the index in force
 *   DIR/manifests/v2/nodes/sha256/<hex>.json  the nodes on the paths this agent walked
 *   DIR/manifests/latest.json                 v1's manifest, from a mirror without v2
 *   DIR/keys.json                             the mirror's keys.json, a convenience as at the mirror
 *
 * The index (or latest.json) is replaced only once everything it lists for this agent is on
 * disk, so what is served is always a complete set. Node files are content-addressed: written
 * when fetched, hash-checked again when a process starts (a file cut short by a crash is
 * dropped), and removed once neither the current walk nor the one before pins them, so an agent
 * below that read the previous index can still finish its walk.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../platform/files.ts';
import type { NodeStore } from './tree-walk.ts';

const NODE_FILE = /^([0-9a-f]{64})\.json$/;
const TEMP_PREFIX = '.tmp-';

export class ServedFiles implements NodeStore {
  readonly dir: string;
  readonly indexPath: string;
  readonly latestPath: string;
  readonly keysPath: string;
  readonly nodesDir: string;
  readonly #nodes = new Set<string>();

  constructor(dir: string) {
    this.dir = dir;
    this.indexPath = join(dir, 'manifests', 'v2', 'index.json');
    this.latestPath = join(dir, 'manifests', 'latest.json');
    this.keysPath = join(dir, 'keys.json');
    this.nodesDir = join(dir, 'manifests', 'v2', 'nodes', 'sha256');
  }

  /** Makes the directories, removes temp files, and keeps only node files whose bytes match their name. */
  async prepare(): Promise<{ removed: number }> {
    await mkdir(this.nodesDir, { recursive: true });
    let removed = 0;
    const drop = (path: string) =>
      unlink(path).then(
        () => void removed++,
        () => {},
      );
    for (const dir of [join(this.dir, 'manifests', 'v2'), join(this.dir, 'manifests')]) {
      for (const name of await readdir(dir)) if (name.startsWith(TEMP_PREFIX)) await drop(join(dir, name));
    }
    this.#nodes.clear();
    for (const name of await readdir(this.nodesDir)) {
      const path = join(this.nodesDir, name);
      const match = NODE_FILE.exec(name);
      if (match === null) {
        if (name.startsWith(TEMP_PREFIX)) await drop(path);
        continue;
      }
      const bytes = await readFile(path).catch(() => undefined);
      if (bytes !== undefined && createHash('sha256').update(bytes).digest('hex') === match[1]) {
        this.#nodes.add(match[1]!);
      } else await drop(path);
    }
    return { removed };
  }

  has(pin: string): boolean {
    return this.#nodes.has(pin);
  }

  /**
   * Keeps a verified node's bytes. Not flushed one by one (a first walk may write thousands):
   * prepare() re-checks them after a crash, and the index that pins them is flushed.
   */
  async put(pin: string, bytes: Uint8Array): Promise<void> {
    if (this.#nodes.has(pin)) return;
    const tmp = join(this.nodesDir, `${TEMP_PREFIX}${pin}-${randomUUID()}`);
    try {
      await writeFile(tmp, bytes);
      await rename(tmp, join(this.nodesDir, `${pin}.json`));
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
    this.#nodes.add(pin);
  }

  /** Removes node files not in `keep`; returns how many. */
  async retainNodes(keep: ReadonlySet<string>): Promise<number> {
    let removed = 0;
    for (const pin of [...this.#nodes]) {
      if (keep.has(pin)) continue;
      this.#nodes.delete(pin);
      await unlink(join(this.nodesDir, `${pin}.json`)).then(
        () => void removed++,
        () => {},
      );
    }
    return removed;
  }

  /** Publishes the index in force; a v1 latest.json, if any, goes (this agent never serves v1 again). */
  async publishIndex(envelope: Uint8Array): Promise<void> {
    await writeFileAtomic(this.indexPath, envelope);
    await unlink(this.latestPath).catch(() => {});
  }

  async publishLatest(envelope: Uint8Array): Promise<void> {
    await writeFileAtomic(this.latestPath, envelope);
  }

  async publishKeys(bytes: Uint8Array): Promise<void> {
    await writeFileAtomic(this.keysPath, bytes);
  }

  async removeKeys(): Promise<void> {
    await unlink(this.keysPath).catch(() => {});
  }

  /** Whether a signed document is on disk to serve. */
  async holdsManifest(): Promise<boolean> {
    for (const path of [this.indexPath, this.latestPath]) {
      if ((await stat(path).catch(() => undefined))?.isFile()) return true;
    }
    return false;
  }
}
