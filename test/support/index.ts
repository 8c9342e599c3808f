/** Test helpers shared by every suite: real and fake registries, Wasm fixtures, tar and push tools, the in-process CLI. */
export * from './cli.ts';
export * from './fake-registry.ts';
export * from './harness.ts';
export * from './push.ts';
export * from './registry.ts';
export * from './tar.ts';
export * from './wasm.ts';
