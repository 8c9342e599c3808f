/**
 * The read-only registry API in the template: CloudFront serves `/v2*` from the publisher's
 * `registry/` objects through the two functions (no Lambda on the read path), every method
 * reaches the request function (which refuses writes itself), a missing key is a 404 with the
 * registry error document, the view is replaceable under the create-only bucket policy, and only
 * the publish function writes it. The functions' behaviour has its own tests
 * (cloudfront-functions.test.ts) and runs end to end in test/aws/registry-view.e2e.test.ts.
 */
import { runInNewContext } from 'node:vm';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { registryRequestCode, registryResponseCode } from '../../infra/lib/cloudfront-functions.ts';
import { REGISTRY_NOT_FOUND_BODY } from '../../infra/lib/constructs/site-objects.ts';
import { EXAMPLE_CONFIG } from '../../infra/lib/deployment.ts';
import { VIEWER_REQUEST_CODE } from '../../infra/lib/storage-stack.ts';
import { loadConfigFile } from '../../shared/core/config.ts';
import { registryKeys } from '../../shared/core/storage-keys.ts';
import { deniedWithoutIfNoneMatch, FUNCTION_ROLES, objectGrants, synthApp } from './helpers.ts';

let storage: Template;
let pipeline: Template;
let sourceIds: string[];

beforeAll(async () => {
  const stacks = synthApp();
  storage = Template.fromStack(stacks.storage);
  pipeline = Template.fromStack(stacks.pipeline);
  sourceIds = (await loadConfigFile(EXAMPLE_CONFIG)).sources.map((s) => s.id);
});

interface Behavior {
  PathPattern: string;
  AllowedMethods: string[];
  CachedMethods?: string[];
  Compress: boolean;
  CachePolicyId: { Ref: string };
  FunctionAssociations: { EventType: string; FunctionARN: { 'Fn::GetAtt': [string, string] } }[];
}

const distributionConfig = () =>
  Object.values(storage.findResources('AWS::CloudFront::Distribution'))[0]!.Properties.DistributionConfig as {
    CacheBehaviors: Behavior[];
    CustomErrorResponses: unknown[];
  };
const registryBehavior = () => distributionConfig().CacheBehaviors.find((b) => b.PathPattern === 'v2*')!;
const functionCode = (id: string) => storage.toJSON().Resources[id].Properties.FunctionCode as string;

describe('the /v2* behaviour', () => {
  it('runs the request and response functions built from infra/cloudfront with this deployment’s sources', () => {
    // Act
    const associations = registryBehavior().FunctionAssociations;
    const byEvent = Object.fromEntries(
      associations.map((a) => [a.EventType, a.FunctionARN['Fn::GetAtt'][0]]),
    );
    // Assess
    expect(Object.keys(byEvent).sort()).toEqual(['viewer-request', 'viewer-response']);
    expect(functionCode(byEvent['viewer-request']!)).toBe(registryRequestCode(sourceIds));
    expect(functionCode(byEvent['viewer-response']!)).toBe(registryResponseCode());
    // ES5 code (cloudfront-functions.test.ts parses it as such) for the runtime that runs ES5.
    for (const id of Object.values(byEvent)) {
      const config = storage.toJSON().Resources[id].Properties.FunctionConfig;
      expect(config.Runtime).toBe('cloudfront-js-1.0');
      expect(config.Comment.length).toBeLessThanOrEqual(128);
    }
    expect(sourceIds.length).toBeGreaterThan(0);
    for (const id of sourceIds)
      expect(functionCode(byEvent['viewer-request']!)).toContain(JSON.stringify(id));
  });

  it('lets every method reach the function, caches GET and HEAD, and sends the bytes as stored', () => {
    const b = registryBehavior();
    expect([...b.AllowedMethods].sort()).toEqual([
      'DELETE',
      'GET',
      'HEAD',
      'OPTIONS',
      'PATCH',
      'POST',
      'PUT',
    ]);
    // Absent is CloudFront's default: GET and HEAD only.
    expect(b.CachedMethods).toBeUndefined();
    expect(b.Compress).toBe(false);
  });

  it('keeps answers at most a minute, so a tag follows the signed manifest like the index does', () => {
    const policy =
      storage.toJSON().Resources[registryBehavior().CachePolicyId.Ref].Properties.CachePolicyConfig;
    expect(policy).toMatchObject({ DefaultTTL: 30, MaxTTL: 60, MinTTL: 0 });
    // Blobs go out as stored: one cached copy each, whatever encoding a client asks for.
    expect(policy.ParametersInCacheKeyAndForwardedToOrigin).toMatchObject({
      EnableAcceptEncodingGzip: false,
      EnableAcceptEncodingBrotli: false,
    });
    // The query string stays out of the key: the request function folds `n` and `last` into the path.
    expect(policy.ParametersInCacheKeyAndForwardedToOrigin.QueryStringsConfig.QueryStringBehavior).toBe(
      'none',
    );
  });

  it('puts no Lambda on the read path', () => {
    expect(JSON.stringify(distributionConfig())).not.toContain('LambdaFunctionAssociations":[{');
    const lambdas = (distributionConfig().CacheBehaviors as unknown as Record<string, unknown>[]).flatMap(
      (b) => (b.LambdaFunctionAssociations as unknown[] | undefined) ?? [],
    );
    expect(lambdas).toEqual([]);
  });
});

describe('a key the bucket does not hold', () => {
  it('is a 404 with the registry error document, cached briefly', () => {
    expect(distributionConfig().CustomErrorResponses).toEqual(
      [403, 404].map((code) => ({
        ErrorCode: code,
        ResponseCode: 404,
        ResponsePagePath: `/${registryKeys.notFound}`,
        ErrorCachingMinTTL: 10,
      })),
    );
  });

  it('gets a body in the spec’s error format, which the deploy writes and the default function lets through', () => {
    // Prepare
    const defaultFunction = runInNewContext(`${VIEWER_REQUEST_CODE}\n;handler`, {}) as (e: unknown) => {
      uri?: string;
      statusCode?: number;
    };
    const event = (uri: string) => ({
      version: '1.0',
      request: { method: 'GET', uri, headers: {}, querystring: {} },
    });
    // Act
    const document = defaultFunction(event(`/${registryKeys.notFound}`));
    const rawView = defaultFunction(event(`/${registryKeys.manifest('local/plugins/x', '1.0')}`));
    // Assess
    expect(JSON.parse(REGISTRY_NOT_FOUND_BODY).errors[0].code).toBe('MANIFEST_UNKNOWN');
    expect(document.uri).toBe(`/${registryKeys.notFound}`);
    expect(rawView.statusCode).toBe(404);
    const writes = Object.values(pipeline.findResources('Custom::WasmMirrorErrorDocument'));
    expect(writes).toHaveLength(1);
    expect(JSON.stringify(writes[0]!.Properties.Create)).toContain(registryKeys.notFound);
  });
});

describe('an alarm', () => {
  it('fires when the registry view lags the signed manifest two quarter-hours running', () => {
    // Act
    const alarm = Object.values(pipeline.findResources('AWS::CloudWatch::Alarm')).find(
      (a) => a.Properties.MetricName === 'registry_view_failures_total',
    );
    // Assess
    expect(alarm?.Properties).toMatchObject({
      Statistic: 'Sum',
      Period: 900,
      EvaluationPeriods: 2,
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
    });
    expect(alarm?.Properties.AlarmActions).toHaveLength(1);
  });
});

describe('the registry view in the bucket', () => {
  it('is replaceable under the create-only policy, and nothing else under its name is', () => {
    expect(deniedWithoutIfNoneMatch(storage, 'registry/local/plugins/x/manifests/1.0')).toBe(false);
    expect(deniedWithoutIfNoneMatch(storage, registryKeys.notFound)).toBe(false);
    for (const key of ['registryx/a', 'errors/other.json', 'blobs/sha256/ab', 'modules/sha256/ab.wasm']) {
      expect(deniedWithoutIfNoneMatch(storage, key), key).toBe(true);
    }
  });

  it('is written by the publish function alone', () => {
    expect(objectGrants(pipeline, FUNCTION_ROLES.publish)['registry/*']).toEqual([
      's3:DeleteObject',
      's3:PutObject',
    ]);
    for (const other of ['webhook', 'mirror', 'keys', 'canary', 'siteObjects'] as const) {
      const keys = Object.keys(objectGrants(pipeline, FUNCTION_ROLES[other]));
      expect(
        keys.filter((k) => k.startsWith('registry')),
        other,
      ).toEqual([]);
    }
  });
});
