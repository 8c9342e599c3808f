/**
 * Least privilege in the templates: the internet-facing webhook function can write nothing the
 * mirror or the publisher reads as truth, only the publish function can sign, modules and
 * numbered manifests are create-only in the bucket itself, and ECR access follows the allow-list.
 */
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { publishFunctionName } from '../../infra/lib/deployment.ts';
import { repositoryNamePatterns } from '../../infra/lib/ecr.ts';
import { compileGlob } from '../../shared/core/glob.ts';
import {
  actionsOf,
  deniedWithoutIfNoneMatch,
  FUNCTION_ROLES,
  objectGrants,
  type Statement,
  statementsOf,
  synthApp,
  writeConfig,
} from './helpers.ts';

let storage: Template;
let pipeline: Template;

beforeAll(() => {
  const stacks = synthApp();
  storage = Template.fromStack(stacks.storage);
  pipeline = Template.fromStack(stacks.pipeline);
});

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

describe('the webhook function', () => {
  it('may read and create its delivery markers and nothing else in the bucket', () => {
    expect(objectGrants(pipeline, FUNCTION_ROLES.webhook)).toEqual({
      'state/deliveries/*': ['s3:GetObject', 's3:PutObject'],
    });
  });

  it('writes nothing the mirror, the publisher or the keys function reads', () => {
    // Act
    const written = Object.entries(objectGrants(pipeline, FUNCTION_ROLES.webhook))
      .filter(([, actions]) => actions.includes('s3:PutObject'))
      .map(([key]) => key);
    // Assess
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
    // Assess
    expect(objectGrants(pipeline, FUNCTION_ROLES.publish)).toMatchObject({
      'state/tags/*': ['s3:GetObject', 's3:PutObject'],
    });
    for (const other of ['webhook', 'mirror', 'keys', 'canary', 'siteObjects'] as const) {
      for (const key of Object.keys(objectGrants(pipeline, FUNCTION_ROLES[other]))) {
        expect(overlap(key, 'state/tags/x.json'), `${other} may touch ${key}`).toBe(false);
      }
    }
  });
});

describe('the publish function', () => {
  it('reads and writes the manifests, v2 included, writes the registry view, and deletes only unlisted content and its notes', () => {
    expect(objectGrants(pipeline, FUNCTION_ROLES.publish)).toEqual({
      'blobs/sha256/*': ['s3:DeleteObject', 's3:GetObject'],
      'manifests/*': ['s3:GetObject', 's3:PutObject'],
      'modules/*': ['s3:DeleteObject'],
      'registry/*': ['s3:DeleteObject', 's3:PutObject'],
      'state/oci-refs/*': ['s3:DeleteObject'],
      'state/oci/*': ['s3:DeleteObject', 's3:GetObject'],
      'state/registry-pending/*': ['s3:DeleteObject', 's3:GetObject', 's3:PutObject'],
      'state/registry/*': ['s3:DeleteObject', 's3:GetObject', 's3:PutObject'],
      'state/tags/*': ['s3:GetObject', 's3:PutObject'],
      'state/unlisted-oci/*': ['s3:DeleteObject', 's3:GetObject', 's3:PutObject'],
      'state/unlisted/*': ['s3:DeleteObject', 's3:GetObject', 's3:PutObject'],
    });
  });

  it('is the only function that may delete anything in the bucket', () => {
    // Assess
    for (const other of ['webhook', 'mirror', 'keys', 'canary', 'siteObjects'] as const) {
      for (const [key, actions] of Object.entries(objectGrants(pipeline, FUNCTION_ROLES[other]))) {
        expect(actions, `${other} on ${key}`).not.toContain('s3:DeleteObject');
      }
    }
  });

  it('may list the bucket, to find unlisted modules and index versions', () => {
    // Act
    const lists = statementsOf(pipeline, FUNCTION_ROLES.publish).filter(
      (s) => s.Effect === 'Allow' && actionsOf(s).includes('s3:ListBucket'),
    );
    // Assess
    expect(lists).toHaveLength(1);
    expect(JSON.stringify(lists[0]!.Resource)).not.toContain('/');
  });
});

describe('signing', () => {
  it('is denied to any caller of the signer role but the publish function, by its fixed name', () => {
    // Act
    const name = publishFunctionName('prod-mesh');
    const role = Object.entries(storage.findResources('AWS::IAM::Role')).find(([id]) =>
      id.startsWith('PublisherRole'),
    )![1];
    const statements = (role.Properties.Policies as { PolicyDocument: { Statement: Statement[] } }[]).flatMap(
      (p) => p.PolicyDocument.Statement,
    );
    const deny = statements.find((s) => s.Effect === 'Deny' && actionsOf(s).includes('kms:Sign'))!;
    // Assess
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
    // Act / Assess
    for (const mirror of ['prod-mesh', 'a.b', 'a-b', 'x'.repeat(128), `${'x'.repeat(127)}y`]) {
      expect(publishFunctionName(mirror)).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    }
    expect(publishFunctionName('a.b')).not.toBe(publishFunctionName('a-b'));
    expect(publishFunctionName('x'.repeat(128))).not.toBe(publishFunctionName(`${'x'.repeat(127)}y`));
  });
});

describe('the mirror bucket policy', () => {
  it('refuses PutObject without If-None-Match on modules and numbered manifests', () => {
    // Act / Assess
    for (const key of [
      'modules/sha256/0a1b2c.wasm',
      'manifests/1.json',
      'manifests/42.json',
      'manifests/1000000.json',
      'manifests/v2/index/1.json',
      'manifests/v2/index/42.json',
      `manifests/v2/nodes/sha256/${'0a'.repeat(32)}.json`,
    ]) {
      expect(deniedWithoutIfNoneMatch(storage, key), key).toBe(true);
    }
  });

  it('still lets the publisher replace the v2 index, latest.json and keys.json, and every function write its state notes', () => {
    // Act / Assess
    for (const key of [
      'manifests/v2/index.json',
      'manifests/latest.json',
      'keys.json',
      'state/deliveries/ghcr/ab12',
      'state/pulled/ab12.json',
      'state/rejected/ab12.json',
      'state/tags/ab12.json',
    ]) {
      expect(deniedWithoutIfNoneMatch(storage, key), key).toBe(false);
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
    // Act: the example config allows wasm/** in 123456789012.dkr.ecr.eu-west-1.amazonaws.com.
    const resources = ecrResources(pipeline);
    // Assess
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
    // Prepare
    const path = writeConfig(
      [
        'mirror: { name: ecr-globs }',
        'sources:',
        '  - { id: a, type: ecr, registry: "111122223333.dkr.ecr.us-east-1.amazonaws.com", repositories: ["team/**/filter", "edge/auth-?"] }',
        '  - { id: b, type: ecr, registry: "444455556666.dkr.ecr.eu-west-1.amazonaws.com", repositories: ["plugins/*"] }',
        '',
      ].join('\n'),
    );
    // Act
    const t = Template.fromStack(synthApp({ config: path }).pipeline);
    const resources = ecrResources(t).join(' ');
    // Assess
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
    // Act / Assess
    expect(repositoryNamePatterns('**')).toEqual(['*']);
    expect(repositoryNamePatterns('wasm/**')).toEqual(['wasm', 'wasm/*']);
    expect(repositoryNamePatterns('**/filter')).toEqual(['*/filter', 'filter']);
    expect(repositoryNamePatterns('a/**/b/**')).toEqual(['a/*/b', 'a/*/b/*', 'a/b', 'a/b/*']);
    expect(repositoryNamePatterns('acme/filter-?')).toEqual(['acme/filter-?']);
    // Act / Assess: every name the glob matches is matched by one of its patterns (IAM `*` crosses `/`).
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
