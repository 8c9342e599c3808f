/**
 * The shape of a fault case, and the start-up most of them share: a registry that notifies the
 * mirror of pushes, and the server, on a port chosen before either starts.
 */
import { join } from 'node:path';
import { freePort } from '../../test/support/registry.ts';
import { FlappingRegistry, MirrorServer, type Scope, TOKEN } from './harness.ts';
import type { Tally } from './listing.ts';

export interface CaseContext {
  scope: Scope;
  /** Records a pass/fail condition of the case; any false one fails it. */
  check(ok: boolean, what: string): void;
  /** A figure or fact for the report. */
  note(text: string): void;
}

export interface CaseResult {
  /** Webhook deliveries the server accepted, or what stands for them in the case (commands, syncs). */
  accepted: number | string;
  tally: Tally;
  /** Peak RSS in KiB of the process the column measures (the server, unless `rssOf` says). */
  peakKiB: number;
  rssOf?: string;
}

export type FaultCase = (ctx: CaseContext) => Promise<CaseResult>;

export interface Rig {
  registry: FlappingRegistry;
  server: MirrorServer;
  dataDir: string;
  mirrorName: string;
}

/**
 * A registry notifying `/hooks/local` of every manifest push, and a server (not started yet)
 * whose source `local` pulls `plugins/**` from it.
 */
export async function rig(
  scope: Scope,
  mirrorName: string,
  options: { dataDir?: string; source?: string; extraSources?: string; mirror?: string } = {},
): Promise<Rig> {
  const port = await freePort();
  const registry = await FlappingRegistry.start(scope, {
    url: `http://127.0.0.1:${port}/hooks/local`,
    token: TOKEN,
  });
  const dataDir = options.dataDir ?? join(scope.tempDir(mirrorName), 'data');
  const mirror = options.mirror === undefined ? '' : `, ${options.mirror}`;
  const source = options.source ?? 'repositories: ["plugins/**"]';
  const config = [
    `mirror: { name: ${mirrorName}${mirror} }`,
    'sources:',
    `  - { id: local, type: distribution, registry: "${registry.host}", insecure: true, ${source}, webhookSecretEnv: HOOK_TOKEN }`,
    options.extraSources ?? '',
  ].join('\n');
  const server = await MirrorServer.create(scope, { dataDir, config, env: { HOOK_TOKEN: TOKEN }, port });
  return { registry, server, dataDir, mirrorName };
}

/** A tally with nothing expected and nothing listed, for cases about the server itself. */
export const NOTHING: Tally = { listed: 0, lost: 0, duplicated: 0, missing: [] };
