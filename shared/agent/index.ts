/** The mesh agent: verified sync of the mirror's modules into a local directory. */
export { PrometheusRegistry } from '../platform/telemetry.ts';
export {
  type AgentOptions,
  type LoopOptions,
  MANIFEST_FILE,
  runAgentLoop,
  STATE_FILE,
  type SyncResult,
  WasmMirrorAgent,
} from './agent.ts';
export { parseDuration, readManifestSource } from './manifest-source.ts';
export { parseListenAddress, startMetricsServer } from './metrics-server.ts';
export { moduleSelector } from './select.ts';
export { type AgentState, readState, writeState } from './state.ts';
