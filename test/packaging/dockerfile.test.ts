/**
 * The Dockerfile, checked without a Docker engine: its stages, the user, the entrypoint, that
 * every file it copies exists and reaches the build context, and that it is the image the
 * Kubernetes DaemonSet names and runs.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import picomatch from 'picomatch';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

const ROOT = join(import.meta.dirname, '..', '..');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** Instructions by stage; comments dropped, continuation lines joined. */
function parseDockerfile(text: string): Stage[] {
  const logical = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  const stages: Stage[] = [];
  for (const line of logical) {
    const [, op, args] = /^(\S+)\s+(.*)$/.exec(line) ?? [];
    if (op === undefined || args === undefined) throw new Error(`cannot read: ${line}`);
    if (op.toUpperCase() === 'FROM') {
      const [from, as, name] = args.split(/\s+/);
      stages.push({ from: from!, ...(as?.toUpperCase() === 'AS' ? { name } : {}), instructions: [] });
    } else {
      if (stages.length === 0) throw new Error(`${op} before FROM`);
      stages.at(-1)!.instructions.push({ op: op.toUpperCase(), args });
    }
  }
  return stages;
}

/** COPY's flags and its sources (every word but the last, the destination). */
function copyParts(args: string): { flags: Record<string, string>; sources: string[] } {
  const words = args.split(/\s+/);
  const flags: Record<string, string> = {};
  while (words[0]?.startsWith('--')) {
    const [k, v] = words.shift()!.slice(2).split('=');
    flags[k!] = v ?? '';
  }
  return { flags, sources: words.slice(0, -1) };
}

/** Whether .dockerignore leaves `path` in the build context (the last matching pattern decides). */
function inContext(path: string, patterns: string[]): boolean {
  let included = true;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const pattern = (negate ? raw.slice(1) : raw).replace(/\/+$/, '');
    if (picomatch(pattern, { dot: true })(path.replace(/\/+$/, ''))) included = negate;
  }
  return included;
}

const stages = parseDockerfile(read('Dockerfile'));
const final = stages.at(-1)!;
const finalOps = (op: string) => final.instructions.filter((i) => i.op === op);
const daemonSet = parseYaml(read('infra/kubernetes/agent-daemonset.yaml')) as {
  spec: {
    template: {
      spec: {
        containers: {
          image: string;
          args: string[];
          securityContext: { runAsUser: number; runAsGroup: number; readOnlyRootFilesystem: boolean };
        }[];
      };
    };
  };
};
const agent = daemonSet.spec.template.spec.containers[0]!;
const pkg = JSON.parse(read('package.json')) as {
  name: string;
  version: string;
  bin: Record<string, string>;
};

describe('Dockerfile', () => {
  it('builds in one stage and runs from a small Node.js image in another', () => {
    // Assess
    expect(stages.length).toBe(2);
    expect(stages[0]!.name).toBe('build');
    expect(stages[0]!.from).toMatch(/^node:22(\.\d+)*-slim$/);
    expect(final.from).toMatch(/^(gcr\.io\/distroless\/nodejs22-debian12(:nonroot)?|node:22(\.\d+)*-slim)$/);
    // The run stage only copies what the build made: no package manager runs in it.
    expect(finalOps('RUN')).toEqual([]);
  });

  it('runs as the non-root user 65532, the user the DaemonSet runs it as', () => {
    // Act
    const users = finalOps('USER');
    // Assess
    expect(users.map((u) => u.args)).toEqual(['65532:65532']);
    expect(agent.securityContext.runAsUser).toBe(65532);
    expect(agent.securityContext.runAsGroup).toBe(65532);
  });

  it('has the installed package’s wasm-mirror command as its entrypoint', () => {
    // Act
    const [entrypoint] = finalOps('ENTRYPOINT');
    const argv = JSON.parse(entrypoint!.args) as string[];
    // Assess
    expect(argv).toEqual(['/nodejs/bin/node', `/app/${pkg.bin['wasm-mirror']}`]);
    // /app is the package as `npm install --global --prefix /opt/wasm-mirror` laid it out.
    const build = stages[0]!.instructions.map((i) => i.args).join('\n');
    expect(build).toContain('npm pack');
    expect(build).toMatch(/npm install --global --prefix \/opt\/wasm-mirror --offline/);
    const app = finalOps('COPY')
      .map((c) => copyParts(c.args))
      .find(
        (c) => c.flags.from === 'build' && c.sources[0] === `/opt/wasm-mirror/lib/node_modules/${pkg.name}`,
      );
    expect(app, 'COPY --from=build of the installed package to /app').toBeDefined();
    expect(finalOps('COPY').some((c) => c.args.endsWith(' /app'))).toBe(true);
  });

  it('copies only files that exist and that .dockerignore lets into the context', () => {
    // Prepare
    const ignore = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    const names = new Set(stages.map((s) => s.name));
    // Act / Assess
    for (const stage of stages) {
      for (const copy of stage.instructions.filter((i) => i.op === 'COPY' || i.op === 'ADD')) {
        expect(copy.op, 'COPY, not ADD').toBe('COPY');
        const { flags, sources } = copyParts(copy.args);
        if (flags.from !== undefined) {
          expect(names.has(flags.from), `stage ${flags.from}`).toBe(true);
          continue;
        }
        for (const source of sources) {
          expect(existsSync(join(ROOT, source)), source).toBe(true);
          expect(inContext(source, ignore), `${source} is excluded by .dockerignore`).toBe(true);
        }
      }
    }
  });

  it('is the image the DaemonSet names, built with the tag its header gives', () => {
    // Act
    const tag = /docker build -t (\S+) \./.exec(read('Dockerfile'))?.[1];
    // Assess
    expect(tag).toBe(agent.image);
    expect(agent.image.split(':').at(-1)).toBe(pkg.version);
    // The arguments are the command's: the entrypoint is `wasm-mirror`.
    expect(agent.args[0]).toBe('agent');
    // A read-only root file system suits it: the package writes nothing next to itself.
    expect(agent.securityContext.readOnlyRootFilesystem).toBe(true);
  });
});
