import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import picomatch from 'picomatch';
import { buildApp, type WasmMirrorStacks } from '../../infra/lib/app.ts';
import { EXAMPLE_CONFIG } from '../../infra/lib/deployment.ts';
import { statusPageHtml } from '../../shared/status-page/page.ts';

/** The page `cdk synth` uploads as index.html, built once per test file. */
export const STATUS_PAGE_HTML = await statusPageHtml();

/**
 * The app as `npm run synth` builds it: the example config unless the context names another (pass
 * `config: undefined` for none), with the status page. Bundling is skipped
 * (`aws:cdk:bundling-stacks: []`) because templates, not bundles, are under test here; `cdk synth`
 * and the bench bundle for real.
 */
export function synthApp(context: Record<string, unknown> = {}): { app: App } & WasmMirrorStacks {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [], config: EXAMPLE_CONFIG, ...context } });
  return { app, ...buildApp(app, { statusPageHtml: STATUS_PAGE_HTML }) };
}

export function writeConfig(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'infra-config-'));
  const path = join(dir, 'wasm-mirror.config.yaml');
  writeFileSync(path, text);
  return path;
}

export interface Statement {
  Effect: string;
  Action: string | string[];
  Resource?: unknown;
  NotResource?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

export const actionsOf = (s: Statement): string[] => [s.Action].flat();

/** Each function's role, by the logical ID its policies name (the publisher's is imported from storage). */
export const FUNCTION_ROLES = {
  webhook: /^WebhookFunctionRole/,
  mirror: /^MirrorFunctionRole/,
  publish: /PublisherRole/,
  keys: /^KeysFunctionRole/,
  canary: /^CanaryFunctionRole/,
  siteObjects: /^SiteObjectsRole/,
};

/** The statements of every IAM policy attached to a role whose logical ID matches `role`. */
export function statementsOf(t: Template, role: RegExp): Statement[] {
  return Object.values(t.findResources('AWS::IAM::Policy'))
    .filter((p) =>
      (p.Properties.Roles as unknown[]).some((r) => role.test(JSON.stringify(r).replace(/^\{"Ref":"/, ''))),
    )
    .flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[]);
}

/** `state/pulled/*` from the ARN of objects in the mirror bucket; undefined for anything else. */
export function objectKeyOf(resource: unknown): string | undefined {
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
export function objectGrants(t: Template, role: RegExp): Record<string, string[]> {
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

/** Puts and multipart completions without If-None-Match; the parts themselves carry no header. */
const CREATE_ONLY_CONDITION = {
  Null: { 's3:if-none-match': 'true' },
  Bool: { 's3:ObjectCreationOperation': 'true' },
};

/** Whether the mirror bucket's policy (storage stack) refuses a PutObject of `key` without If-None-Match. */
export function deniedWithoutIfNoneMatch(storage: Template, key: string): boolean {
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
}
