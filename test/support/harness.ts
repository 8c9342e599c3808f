/**
 * One start-up for end-to-end tests: a real registry (optionally notifying the mirror), a data
 * directory, and the embedded mirror configured with the given sources. `stop()` ends both and
 * removes the directory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../shared/core/config.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import { type EmbeddedMirror, type EmbeddedOptions, startEmbedded } from '../../shared/embedded/runtime.ts';
import { freePort, type StartRegistryOptions, startRegistry, type TestRegistry } from './registry.ts';

export interface HarnessOptions {
  /** The manifest's mirror name. */
  mirrorName: string;
  /** Extra keys under `mirror:` in flow style, e.g. `manifestTtl: 48h`. */
  mirrorSettings?: string;
  /**
   * The `sources:` list as YAML; `{registry}` stands for the test registry's host. Default: one
   * `distribution` source `local` for `plugins/**` whose secret is in HOOK_TOKEN.
   */
  sources?: string;
  /** Secrets the config names. Default: HOOK_TOKEN = `token`. */
  env?: Record<string, string>;
  token?: string;
  /** The registry sends its push notifications to `/hooks/local` with `token`. */
  notify?: boolean;
  registry?: Omit<StartRegistryOptions, 'notificationsUrl' | 'notificationsToken'>;
  retry?: EmbeddedOptions['retry'];
}

export interface Harness {
  registry: TestRegistry;
  mirror: EmbeddedMirror;
  dataDir: string;
  stop(): Promise<void>;
}

export const HARNESS_TOKEN = 'harness-hook-token-0123456789';

export async function startHarness(options: HarnessOptions): Promise<Harness> {
  const token = options.token ?? HARNESS_TOKEN;
  const port = options.notify ? await freePort() : 0;
  const registry = await startRegistry({
    ...options.registry,
    ...(options.notify
      ? { notificationsUrl: `http://127.0.0.1:${port}/hooks/local`, notificationsToken: token }
      : {}),
  });
  const dataDir = mkdtempSync(join(tmpdir(), `wm-${options.mirrorName}-`));
  try {
    const sources =
      options.sources ??
      `  - { id: local, type: distribution, registry: "{registry}", insecure: true, repositories: ["plugins/**"], webhookSecretEnv: HOOK_TOKEN }`;
    const settings = options.mirrorSettings === undefined ? '' : `, ${options.mirrorSettings}`;
    const config = parseConfig(
      `mirror: { name: ${options.mirrorName}${settings} }\nsources:\n${sources.replaceAll('{registry}', registry.host)}\n`,
    );
    const mirror = await startEmbedded({
      config,
      dataDir,
      port,
      env: options.env ?? { HOOK_TOKEN: token },
      logger: silentLogger,
      ...(options.retry === undefined ? {} : { retry: options.retry }),
    });
    return {
      registry,
      mirror,
      dataDir,
      stop: async () => {
        await mirror.stop();
        await registry.stop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await registry.stop();
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}
