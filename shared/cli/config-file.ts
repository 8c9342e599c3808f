import { access } from 'node:fs/promises';
import { defaultConfig, loadConfigFile, type MirrorConfig } from '../core/config.ts';

export const DEFAULT_CONFIG_FILE = 'wasm-mirror.config.yaml';
export const DEFAULT_DATA_DIR = 'wasm-mirror-data';

/** `--config FILE`, else ./wasm-mirror.config.yaml when present, else the built-in defaults. */
export async function resolveConfig(
  path: string | undefined,
): Promise<{ config: MirrorConfig; path?: string }> {
  if (path !== undefined) return { config: await loadConfigFile(path), path };
  try {
    await access(DEFAULT_CONFIG_FILE);
  } catch {
    return { config: defaultConfig() };
  }
  return { config: await loadConfigFile(DEFAULT_CONFIG_FILE), path: DEFAULT_CONFIG_FILE };
}
