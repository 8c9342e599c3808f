/**
 * The architecture's boundaries, checked by `npm run lint` (docs/architecture.md draws them).
 * The core (shared/core) is the product's rules and imports nothing else of the project and no
 * cloud SDK; the agent ships on its own and never reaches into the embedded runtime or the
 * Lambda code; nothing in shared/ imports the Lambda runtime or the CDK app.
 */
module.exports = {
  forbidden: [
    {
      name: 'core-is-self-contained',
      comment: 'shared/core imports only shared/core, Node built-ins and its own small libraries.',
      severity: 'error',
      from: { path: '^shared/core/' },
      to: { pathNot: ['^shared/core/', '^node_modules/(yaml|zod|picomatch)/'], dependencyTypesNot: ['core'] },
    },
    {
      name: 'agent-stands-alone',
      comment: 'The agent is deployed without the mirror: no embedded runtime, local adapters or CLI.',
      severity: 'error',
      from: { path: '^shared/agent/' },
      to: { path: '^shared/(embedded|adapters|cli)/' },
    },
    {
      name: 'shared-never-imports-lambda-or-infra',
      severity: 'error',
      from: { path: '^shared/' },
      to: { path: '^(functions|infra)/' },
    },
    {
      name: 'functions-never-import-local-runtime',
      comment: 'Lambda code wires AWS adapters around the core; the embedded runtime is not bundled.',
      severity: 'error',
      from: { path: '^functions/' },
      to: { path: '^shared/(embedded|adapters|cli|agent)/' },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.mjs', '.js'] },
  },
};
