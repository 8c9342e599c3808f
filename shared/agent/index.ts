/** The mesh agent: verified sync of the mirror's modules into a local directory. */
export { PrometheusRegistry } from '../platform/telemetry.ts';
export { type AgentOptions, MANIFEST_FILE, STATE_FILE, type SyncResult, WasmMirrorAgent } from './agent.ts';
export { HttpClient } from './http.ts';
export { type LoopOptions, runAgentLoop } from './loop.ts';
export { parseDuration, readManifestSource } from './manifest-source.ts';
export { AGENT_METRICS, MANIFEST_DOCUMENTS, REMOTE_FETCH_RESULTS } from './metrics.ts';
export { parseListenAddress, startMetricsServer } from './metrics-server.ts';
export { moduleSelector, selectionNames } from './select.ts';
export { startServing } from './serve.ts';
export { type AgentState, readState, writeState } from './state.ts';
