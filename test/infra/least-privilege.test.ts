/**
 * Least privilege in the templates: the internet-facing webhook function can write nothing the
 * mirror or the publisher reads as truth, only the publish function can sign, modules and
 * numbered manifests are create-only in the bucket itself, and ECR access follows the allow-list.
 */
import { Template } from 'aws-cdk-lib/assertions';
import picomatch from 'picomatch';
import { beforeAll, describe, expect, it } from 'vitest';
import { publishFunctionName } from '../../infra/lib/deployment.ts';
import { repositoryNamePatterns } from '../../infra/lib/ecr.ts';
import { compileGlob } from '../../shared/core/glob.ts';
import { synthApp, writeConfig } from './helpers.ts';

interface Statement {
  Effect: string;
  Action: string | string[];
  Resource?: unknown;
  NotResource?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

let storage: Template;
let pipeline: Template;

beforeAll(() => {
  const stacks = synthApp();
  storage = Template.fromStack(stacks.storage);
  pipeline = Template.fromStack(stacks.pipeline);
});

const actionsOf = (s: Statement) => [s.Action].flat();

/** The statements of every IAM policy attached to a role whose logical ID matches `role`. */
function statementsOf(t: Template, role: RegExp): Statement[] {
  return Object.values(t.findResources('AWS::IAM::Policy'))
    .filter((p) =>
      (p.Properties.Roles as unknown[]).some((r) => role.test(JSON.stringify(r).replace(/^\{"Ref":"/, ''))),
    )
    .flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[]);
}

/** `state/pulled/*` from the ARN of objects in the mirror bucket; undefined for anything else. */
function objectKeyOf(resource: unknown): string | undefined {
  const parts = (resource as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join']?.[1];
  const last = parts?.at(-1);
  if (typeof last === 'string' && last.startsWith('/')) return last.slice(1);
  if (typeof resource === 'string' && resource.includes(':s3:::')) {
    const slash = resource.indexOf('/');
    return slash < 0 ? undefined : resource.slice(slash + 1);
  }
  return undefined;
}

/** Object key patterns a role may act on, with the S3 actions allowed on each. */
function objectGrants(t: Template, role: RegExp): Record<string, string[]> {
  const grants: Record<string, Set<string>> = {};
  for (const s of statementsOf(t, role)) {
    if (s.Effect !== 'Allow') continue;
    const s3 = actionsOf(s).filter((a) => a.startsWith('s3:') && a !== 's3:ListBucket');
    for (const resource of [s.Resource].flat()) {
      const key = objectKeyOf(resource);
      if (key === undefined || s3.length === 0) continue;
      grants[key] ??= new Set();
      for (const a of s3) grants[key].add(a);
    }
  }
  return Object.fromEntries(Object.entries(grants).map(([k, v]) => [k, [...v].sort()]));
}

/** Two key patterns (`prefix*` or exact keys) share at least one key. */
function overlap(a: string, b: string): boolean {
  const pa = a.replace(/\*.*$/, '');
  const pb = b.replace(/\*.*$/, '');
  const wa = a.includes('*');
  const wb = b.includes('*');
  if (wa && wb) return pa.startsWith(pb) || pb.startsWith(pa);
  if (wa) return b.startsWith(pa);
  if (wb) return a.startsWith(pb);
  return a === b;
}

const FUNCTION_ROLES = {
  webhook: /^WebhookFunctionRole/,
  mirror: /^MirrorFunctionRole/,
  publish: /PublisherRole/,
  keys: /^KeysFunctionRole/,
  canary: /^CanaryFunctionRole/,
};

describe('the webhook function', () => {
  it('may read and create its delivery markers and nothing else in the bucket', () => {
    expect(objectGrants(pipeline, FUNCTION_ROLES.webhook)).toEqual({
      'state/deliveries/*': ['s3:GetObject', 's3:PutObject'],
    });
  });

  it('writes nothing the mirror, the publisher or the keys function reads', () => {
    const written = Object.entries(objectGrants(pipeline, FUNCTION_ROLES.webhook))
      .filter(([, actions]) => actions.includes('s3:PutObject'))
      .map(([key]) => key);
    expect(written.length).toBeGreaterThan(0);
    for (const reader of ['mirror', 'publish', 'keys'] as const) {
      const read = Object.entries(objectGrants(pipeline, FUNCTION_ROLES[reader]))
        .filter(([, actions]) => actions.includes('s3:GetObject'))
        .map(([key]) => key);
      for (const w of written)
        for (const r of read) expect(overlap(w, r), `${w} read by ${reader} as ${r}`).toBe(false);
    }
  });
});

describe('per-tag observation notes', () => {
  it('are read and written by the publish function, and by no other function', () => {
    expect(objectGrants(pipeline, FUNCTION_ROLES.publish)).toMatchObject({
      'state/tags/*': ['s3:GetObject', 's3:PutObject'],
    });
    for (const other of ['webhook', 'mirror', 'keys', 'canary'] as const) {
      for (const key of Object.keys(objectGrants(pipeline, FUNCTION_ROLES[other]))) {
        expect(overlap(key, 'state/tags/x.json'), `${other} may touch ${key}`).toBe(false);
      }
    }
  });
});

describe('signing', () => {
  it('is denied to any caller of the signer role but the publish function, by its fixed name', () => {
    const name = publishFunctionName('prod-mesh');
    const role = Object.entries(storage.findResources('AWS::IAM::Role')).find(([id]) =>
      id.startsWith('PublisherRole'),
    )![1];
    const statements = (role.Properties.Policies as { PolicyDocument: { Statement: Statement[] } }[]).flatMap(
      (p) => p.PolicyDocument.Statement,
    );
    const deny = statements.find((s) => s.Effect === 'Deny' && actionsOf(s).includes('kms:Sign'))!;
    expect(deny).toBeDefined();
    expect(deny.Resource).toBe('*');
    expect(Object.keys(deny.Condition!)).toEqual(['ArnNotLike']);
    const allowed = JSON.stringify(deny.Condition!.ArnNotLike!['lambda:SourceFunctionArn']);
    expect(allowed).toContain(`:lambda:`);
    expect(allowed).toContain(`:function:${name}"`);
    expect(allowed).toContain(`:function:${name}:*"`);

    // The publish function carries that name and runs as that role.
    const publish = Object.values(pipeline.findResources('AWS::Lambda::Function')).find((f) =>
      /^Folds/.test(f.Properties.Description),
    )!;
    expect(publish.Properties.FunctionName).toBe(name);
    expect(JSON.stringify(publish.Properties.Role)).toMatch(/PublisherRole/);
  });

  it('names the publish function within Lambda limits, distinctly per mirror', () => {
    for (const mirror of ['prod-mesh', 'a.b', 'a-b', 'x'.repeat(128), `${'x'.repeat(127)}y`]) {
      expect(publishFunctionName(mirror)).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    }
    expect(publishFunctionName('a.b')).not.toBe(publishFunctionName('a-b'));
    expect(publishFunctionName('x'.repeat(128))).not.toBe(publishFunctionName(`${'x'.repeat(127)}y`));
  });
});

describe('the mirror bucket policy', () => {
  const deniedWithoutIfNoneMatch = (key: string): boolean => {
    const policy = Object.entries(storage.findResources('AWS::S3::BucketPolicy')).find(([id]) =>
      id.startsWith('MirrorBucketPolicy'),
    )![1];
    const statements = policy.Properties.PolicyDocument.Statement as Statement[];
    return statements.some((s) => {
      if (s.Effect !== 'Deny' || !actionsOf(s).includes('s3:PutObject')) return false;
      if (JSON.stringify(s.Condition) !== JSON.stringify(CREATE_ONLY_CONDITION)) return false;
      const matches = (patterns: unknown) =>
        [patterns].flat().some((r) => {
          const pattern = objectKeyOf(r);
          return pattern !== undefined && picomatch(pattern, { dot: true, bash: true })(key);
        });
      if (s.NotResource !== undefined) return !matches(s.NotResource);
      return matches(s.Resource);
    });
  };
  // Puts and multipart completions without If-None-Match; the parts themselves carry no header.
  const CREATE_ONLY_CONDITION = {
    Null: { 's3:if-none-match': 'true' },
    Bool: { 's3:ObjectCreationOperation': 'true' },
  };

  it('refuses PutObject without If-None-Match on modules and numbered manifests', () => {
    for (const key of [
      'modules/sha256/0a1b2c.wasm',
      'manifests/1.json',
      'manifests/42.json',
      'manifests/1000000.json',
    ]) {
      expect(deniedWithoutIfNoneMatch(key), key).toBe(true);
    }
  });

  it('still lets the publisher replace latest.json and keys.json, and every function write its state notes', () => {
    for (const key of [
      'manifests/latest.json',
      'keys.json',
      'state/deliveries/ghcr/ab12',
      'state/pulled/ab12.json',
      'state/rejected/ab12.json',
      'state/tags/ab12.json',
    ]) {
      expect(deniedWithoutIfNoneMatch(key), key).toBe(false);
    }
  });
});

describe('Amazon ECR', () => {
  const ecrResources = (t: Template) =>
    statementsOf(t, FUNCTION_ROLES.mirror)
      .filter((s) => actionsOf(s).includes('ecr:BatchGetImage'))
      .flatMap((s) => [s.Resource].flat())
      .map((r) => JSON.stringify(r));

  it('grants pulls from the allow-listed repositories only', () => {
    // The example config allows wasm/** in 123456789012.dkr.ecr.eu-west-1.amazonaws.com.
    const resources = ecrResources(pipeline);
    expect(resources.map((r) => r.replace(/^.*:ecr:/, ':ecr:').replace(/"\]\]\}$/, ''))).toEqual([
      ':ecr:eu-west-1:123456789012:repository/wasm',
      ':ecr:eu-west-1:123456789012:repository/wasm/*',
    ]);
    for (const r of resources) expect(r).not.toMatch(/repository\/\*"/);
  });

  it('lets only pushes to those repositories through the EventBridge rule', () => {
    pipeline.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.ecr'],
        'detail-type': ['ECR Image Action'],
        detail: {
          'action-type': ['PUSH'],
          result: ['SUCCESS'],
          'repository-name': ['wasm', { prefix: 'wasm/' }],
        },
      },
    });
  });

  it('turns each glob into name patterns for IAM and EventBridge, across registries', () => {
    const path = writeConfig(
      [
        'mirror: { name: ecr-globs }',
        'sources:',
        '  - { id: a, type: ecr, registry: "111122223333.dkr.ecr.us-east-1.amazonaws.com", repositories: ["team/**/filter", "edge/auth-?"] }',
        '  - { id: b, type: ecr, registry: "444455556666.dkr.ecr.eu-west-1.amazonaws.com", repositories: ["plugins/*"] }',
        '',
      ].join('\n'),
    );
    const t = Template.fromStack(synthApp({ config: path }).pipeline);
    const resources = ecrResources(t).join(' ');
    for (const arn of [
      ':ecr:us-east-1:111122223333:repository/team/filter',
      ':ecr:us-east-1:111122223333:repository/team/*/filter',
      ':ecr:us-east-1:111122223333:repository/edge/auth-?',
      ':ecr:eu-west-1:444455556666:repository/plugins/*',
    ]) {
      expect(resources).toContain(arn);
    }
    expect(resources).not.toContain(':ecr:eu-west-1:444455556666:repository/team');
    t.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        detail: {
          'repository-name': [
            { wildcard: 'edge/auth-*' },
            { prefix: 'plugins/' },
            { wildcard: 'team/*/filter' },
            'team/filter',
          ],
        },
      },
    });
  });

  it('maps ** to zero or more segments and keeps * and ?', () => {
    expect(repositoryNamePatterns('**')).toEqual(['*']);
    expect(repositoryNamePatterns('wasm/**')).toEqual(['wasm', 'wasm/*']);
    expect(repositoryNamePatterns('**/filter')).toEqual(['*/filter', 'filter']);
    expect(repositoryNamePatterns('a/**/b/**')).toEqual(['a/*/b', 'a/*/b/*', 'a/b', 'a/b/*']);
    expect(repositoryNamePatterns('acme/filter-?')).toEqual(['acme/filter-?']);
    // Every name the glob matches is matched by one of its patterns (IAM `*` crosses `/`).
    const iamLike = (p: string) =>
      new RegExp(
        `^${p
          .replace(/[.+^${}()|[\]\\]/g, '\\$&')
          .replace(/\*/g, '.*')
          .replace(/\?/g, '.')}$`,
      );
    for (const [glob, names] of [
      ['wasm/**', ['wasm', 'wasm/a', 'wasm/a/b']],
      ['a/**/b', ['a/b', 'a/x/b', 'a/x/y/b']],
      ['team/*', ['team/x']],
    ] as const) {
      for (const name of names) {
        expect(compileGlob(glob)(name), `${glob} ${name}`).toBe(true);
        expect(
          repositoryNamePatterns(glob).some((p) => iamLike(p).test(name)),
          `${glob} ${name}`,
        ).toBe(true);
      }
    }
  });
});
