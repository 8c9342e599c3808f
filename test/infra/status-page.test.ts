/**
 * The status page in AWS: index.html at the bucket root, written by the deploy from the page this
 * code builds, replaceable under the create-only bucket policy, and served by CloudFront at `/`
 * with a short cache, compression and the security headers, while `/status` (embedded only)
 * stays a 404. The viewer-request function runs here with the event CloudFront Functions pass.
 */
import { runInNewContext } from 'node:vm';
import { Template } from 'aws-cdk-lib/assertions';
import { ResponseHeadersPolicy } from 'aws-cdk-lib/aws-cloudfront';
import { beforeAll, describe, expect, it } from 'vitest';
import { STATUS_PAGE_KEY, VIEWER_REQUEST_CODE } from '../../infra/lib/storage-stack.ts';
import {
  actionsOf,
  deniedWithoutIfNoneMatch,
  FUNCTION_ROLES,
  objectGrants,
  STATUS_PAGE_HTML,
  statementsOf,
  synthApp,
} from './helpers.ts';

let storage: Template;
let pipeline: Template;

beforeAll(() => {
  const stacks = synthApp();
  storage = Template.fromStack(stacks.storage);
  pipeline = Template.fromStack(stacks.pipeline);
});

interface SdkCall {
  service: string;
  action: string;
  parameters: Record<string, string>;
  physicalResourceId: { id: string };
}

/** An AwsCustomResource call as the provider reads it; references become `<Ref>`. */
function sdkCall(value: unknown): SdkCall | undefined {
  if (value === undefined) return undefined;
  const parts = (value as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join']?.[1] ?? [value];
  return JSON.parse(parts.map((p) => (typeof p === 'string' ? p : '<Ref>')).join('')) as SdkCall;
}

interface Behavior {
  PathPattern?: string;
  CachePolicyId: { Ref: string };
  Compress?: boolean;
  ResponseHeadersPolicyId: string;
  FunctionAssociations?: { EventType: string; FunctionARN: unknown }[];
}

const distributionConfig = () =>
  Object.values(storage.findResources('AWS::CloudFront::Distribution'))[0]!.Properties.DistributionConfig as {
    DefaultCacheBehavior: Behavior;
    CacheBehaviors: Behavior[];
  };
const pageBehavior = () => distributionConfig().CacheBehaviors.find((b) => b.PathPattern === 'index.html')!;

describe('index.html in the bucket', () => {
  it('is written on create and update from the page built at synth, as HTML kept five minutes', () => {
    // Act
    const resources = Object.values(pipeline.findResources('Custom::WasmMirrorStatusPage'));
    // Assess
    expect(resources).toHaveLength(1);
    const props = resources[0]!.Properties;
    const create = sdkCall(props.Create)!;
    expect(create).toMatchObject({
      service: 'S3',
      action: 'PutObject',
      parameters: {
        Bucket: 'wasm-mirror-prod-mesh-<Ref>-<Ref>',
        Key: 'index.html',
        ContentType: 'text/html; charset=utf-8',
        CacheControl: 'public, max-age=300',
      },
    });
    expect(create.parameters.Body).toBe(STATUS_PAGE_HTML);
    expect(create.parameters.Body).toMatch(/^<!doctype html>/i);
    // A changed page changes the properties, so the next deploy writes it again.
    expect(sdkCall(props.Update)).toEqual(create);
    // Left in place when the pipeline goes, like keys.json: the bucket is retained.
    expect(props.Delete).toBeUndefined();
    // The function's own SDK, not one installed from npm during the deploy.
    expect(props.InstallLatestAwsSdk).toBe(false);
    expect(props.ServiceTimeout).toBe('300');
  });

  it('is written by a role that may put that key and the error document, and write its own log group, nothing else', () => {
    // Assess
    expect(objectGrants(pipeline, FUNCTION_ROLES.siteObjects)).toEqual({
      'index.html': ['s3:PutObject'],
      'errors/not-found.json': ['s3:PutObject'],
    });
    const actions = [
      ...new Set(statementsOf(pipeline, FUNCTION_ROLES.siteObjects).flatMap(actionsOf)),
    ].sort();
    expect(actions).toEqual(['logs:CreateLogStream', 'logs:PutLogEvents', 's3:PutObject']);
    const [roleId, role] = Object.entries(pipeline.findResources('AWS::IAM::Role')).find(([id]) =>
      FUNCTION_ROLES.siteObjects.test(id),
    )!;
    expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    // That role is the one the custom resource's function runs as.
    const token = Object.values(pipeline.findResources('Custom::WasmMirrorStatusPage'))[0]!.Properties
      .ServiceToken['Fn::GetAtt'][0] as string;
    const fn = pipeline.toJSON().Resources[token];
    expect(fn.Properties.Role).toEqual({ 'Fn::GetAtt': [roleId, 'Arn'] });
    pipeline.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
  });

  it('may be replaced without If-None-Match; keys beside it and under the layout may not', () => {
    // Act / Assess
    expect(deniedWithoutIfNoneMatch(storage, 'index.html')).toBe(false);
    for (const key of ['index.html.bak', 'index.htm', 'manifests/index.html', 'modules/index.html']) {
      expect(deniedWithoutIfNoneMatch(storage, key), key).toBe(true);
    }
  });
});

describe('the status page on CloudFront', () => {
  it('has an index.html behaviour: short cache, compressed, security headers, no function', () => {
    // Act
    const page = pageBehavior();
    const policy = storage.toJSON().Resources[page.CachePolicyId.Ref].Properties.CachePolicyConfig;
    // Assess
    expect(policy).toMatchObject({ DefaultTTL: 300, MaxTTL: 300, MinTTL: 0 });
    expect(policy.ParametersInCacheKeyAndForwardedToOrigin).toMatchObject({
      EnableAcceptEncodingGzip: true,
      EnableAcceptEncodingBrotli: true,
    });
    expect(page).toMatchObject({
      Compress: true,
      ViewerProtocolPolicy: 'redirect-to-https',
      AllowedMethods: ['GET', 'HEAD'],
      ResponseHeadersPolicyId: ResponseHeadersPolicy.SECURITY_HEADERS.responseHeadersPolicyId,
    });
    expect(page.FunctionAssociations).toBeUndefined();
  });

  it('serves / through the default behaviour, cached and compressed like the page, with the function', () => {
    // Act
    const fallback = distributionConfig().DefaultCacheBehavior;
    const [fnId, fn] = Object.entries(storage.findResources('AWS::CloudFront::Function'))[0]!;
    // Assess
    expect(fallback.FunctionAssociations).toEqual([
      { EventType: 'viewer-request', FunctionARN: { 'Fn::GetAtt': [fnId, 'FunctionARN'] } },
    ]);
    expect(fallback.CachePolicyId).toEqual(pageBehavior().CachePolicyId);
    expect(fallback.Compress).toBe(true);
    expect(fallback.ResponseHeadersPolicyId).toBe(
      ResponseHeadersPolicy.SECURITY_HEADERS.responseHeadersPolicyId,
    );
    expect(fn.Properties.FunctionCode).toBe(VIEWER_REQUEST_CODE);
    expect(fn.Properties.FunctionConfig.Runtime).toBe('cloudfront-js-1.0');
    expect(fn.Properties.FunctionConfig.Comment.length).toBeLessThanOrEqual(128);
  });
});

interface ViewerRequest {
  method: string;
  uri: string;
  querystring: Record<string, { value: string }>;
  headers: Record<string, { value: string }>;
  cookies: Record<string, { value: string }>;
}

/** The viewer-request event CloudFront Functions pass (event structure version 1.0). */
function viewerRequestEvent(uri: string, method = 'GET') {
  return {
    version: '1.0',
    context: {
      distributionDomainName: 'd111111abcdef8.cloudfront.net',
      distributionId: 'EDFDVBD6EXAMPLE',
      eventType: 'viewer-request',
      requestId: '4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ==',
    },
    viewer: { ip: '198.51.100.11' },
    request: {
      method,
      uri,
      querystring: { v: { value: '1' } },
      headers: {
        host: { value: 'd111111abcdef8.cloudfront.net' },
        accept: { value: 'text/html' },
      },
      cookies: {},
    } satisfies ViewerRequest,
  };
}

describe('the viewer-request function', () => {
  // In a context of its own, as CloudFront runs it: no Node globals, no module system.
  const handler = runInNewContext(`${VIEWER_REQUEST_CODE}\nhandler;`, {}) as (
    event: ReturnType<typeof viewerRequestEvent>,
  ) => unknown;
  /** Cross-context objects, compared as the JSON CloudFront would read. */
  const run = (uri: string, method?: string) =>
    JSON.parse(JSON.stringify(handler(viewerRequestEvent(uri, method))));
  const notFound = { statusCode: 404, statusDescription: 'Not Found' };

  it('rewrites / to /index.html and leaves the rest of the request as it came', () => {
    // Act / Assess
    for (const method of ['GET', 'HEAD']) {
      expect(run('/', method)).toEqual({ ...viewerRequestEvent('/index.html', method).request });
    }
    expect(STATUS_PAGE_KEY).toBe('index.html');
  });

  it('lets /index.html and the published paths through untouched', () => {
    // Act / Assess
    for (const uri of [
      '/index.html',
      '/keys.json',
      '/manifests/v2/index.json',
      '/manifests/latest.json',
      '/manifests/v2/index/17.json',
      `/manifests/v2/nodes/sha256/${'ab'.repeat(32)}.json`,
      '/manifests/17.json',
      `/modules/sha256/${'ab'.repeat(32)}.wasm`,
    ]) {
      expect(run(uri), uri).toEqual(viewerRequestEvent(uri).request);
    }
  });

  it('answers 404 for /status and everything else the embedded server or the bucket has', () => {
    // Act / Assess
    for (const uri of [
      '/status',
      '/status/',
      '/healthz',
      '/metrics',
      '/v2/',
      '/v2/wasm/filter/manifests/latest',
      '/state/tags/ab.json',
      `/blobs/sha256/${'ab'.repeat(32)}`,
      '/index.htm',
      '/INDEX.HTML',
      '/keys.json.bak',
      '/manifests',
      '/modules',
      '//',
    ]) {
      expect(run(uri), uri).toEqual(notFound);
    }
  });

  it('is ES5, the language every CloudFront Functions runtime accepts', () => {
    expect(VIEWER_REQUEST_CODE).not.toMatch(/\b(let|const|class)\s|=>|`/);
    expect(VIEWER_REQUEST_CODE.length).toBeLessThan(10 * 1024);
  });
});
