/**
 * The security-relevant properties of the synthesized templates: what a reviewer would check
 * before letting this into an account.
 */
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { mirrorScratchMiB } from '../../infra/lib/constructs/mirror-worker.ts';
import { resignInterval } from '../../infra/lib/constructs/schedules.ts';
import { synthApp, writeConfig } from './helpers.ts';

let storage: Template;
let pipeline: Template;

/** The logical ID prefix of the singleton function behind every AwsCustomResource. */
const SDK_CALL_FUNCTION = 'AWS679f53fac002430cb0da5b7982bd2287';

beforeAll(() => {
  const stacks = synthApp();
  storage = Template.fromStack(stacks.storage);
  pipeline = Template.fromStack(stacks.pipeline);
});

describe('storage stack', () => {
  it('blocks all public access, encrypts, and is retained', () => {
    storage.hasResource('AWS::S3::Bucket', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectLike({
        BucketName: Match.objectLike({ 'Fn::Join': Match.anyValue() }),
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
        },
        LoggingConfiguration: Match.objectLike({ LogFilePrefix: 's3/mirror/' }),
        LifecycleConfiguration: {
          Rules: Match.arrayWith([
            Match.objectLike({
              AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
              Status: 'Enabled',
            }),
            Match.objectLike({ Prefix: 'state/deliveries/', ExpirationInDays: 7 }),
          ]),
        },
      }),
    });
  });

  it('denies every request without TLS, on both buckets', () => {
    // Act
    const policies = storage.findResources('AWS::S3::BucketPolicy');
    // Assess
    expect(Object.keys(policies)).toHaveLength(2);
    storage.allResourcesProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Principal: { AWS: '*' },
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      },
    });
  });

  it('lets only CloudFront (this distribution, through OAC) read the mirror bucket', () => {
    // Assess
    storage.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: Match.stringLikeRegexp('^MirrorBucket') },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Action: 's3:GetObject',
            Principal: { Service: 'cloudfront.amazonaws.com' },
            Condition: { StringEquals: { 'AWS:SourceArn': Match.anyValue() } },
          }),
        ]),
      },
    });
    storage.hasResourceProperties('AWS::CloudFront::OriginAccessControl', {
      OriginAccessControlConfig: {
        OriginAccessControlOriginType: 's3',
        SigningBehavior: 'always',
        SigningProtocol: 'sigv4',
      },
    });
    storage.resourceCountIs('AWS::CloudFront::CloudFrontOriginAccessIdentity', 0);
  });

  it('serves only manifests/, modules/, keys.json, the status page and the registry API over HTTPS, latest.json with a short cache', () => {
    // Act
    const dist = Object.values(storage.findResources('AWS::CloudFront::Distribution'))[0]!;
    const config = dist.Properties.DistributionConfig;
    // Assess: the origin signs with the stack's own Origin Access Control, not merely some id.
    const [oac] = Object.keys(storage.findResources('AWS::CloudFront::OriginAccessControl'));
    expect(config.Origins[0].OriginAccessControlId).toEqual({ 'Fn::GetAtt': [oac, 'Id'] });
    expect(config.Origins[0].S3OriginConfig.OriginAccessIdentity).toBe('');
    const behaviors = config.CacheBehaviors as {
      PathPattern: string;
      ViewerProtocolPolicy: string;
      CachePolicyId: unknown;
    }[];
    expect(behaviors.map((b) => b.PathPattern)).toEqual([
      'manifests/v2/index.json',
      'manifests/latest.json',
      'manifests/*',
      'modules/*',
      'keys.json',
      'index.html',
      'v2*',
    ]);
    for (const b of [...behaviors, config.DefaultCacheBehavior])
      expect(b.ViewerProtocolPolicy).toBe('redirect-to-https');
    expect(config.DefaultCacheBehavior.FunctionAssociations[0].EventType).toBe('viewer-request');
    storage.hasResourceProperties('AWS::CloudFront::CachePolicy', {
      CachePolicyConfig: Match.objectLike({ DefaultTTL: 30, MaxTTL: 60, MinTTL: 0 }),
    });
    storage.hasResourceProperties('AWS::CloudFront::CachePolicy', {
      CachePolicyConfig: Match.objectLike({ DefaultTTL: 31_536_000, MaxTTL: 31_536_000 }),
    });
    // Standard logs outside opt-in regions (operations.test.ts has the condition).
    expect(JSON.stringify(config.Logging)).toContain('"Prefix":"cloudfront/"');
  });

  it('retains every resource, not only the bucket and keys: CDN, bucket policies, publisher role, alias', () => {
    // Act
    const resources = storage.toJSON().Resources as Record<
      string,
      { Type: string; DeletionPolicy?: string; UpdateReplacePolicy?: string }
    >;
    const types = new Set(Object.values(resources).map((r) => r.Type));
    // Assess
    for (const type of [
      'AWS::CloudFront::Distribution',
      'AWS::CloudFront::OriginAccessControl',
      'AWS::S3::BucketPolicy',
      'AWS::IAM::Role',
      'AWS::KMS::Alias',
    ]) {
      expect(types).toContain(type);
    }
    for (const [id, r] of Object.entries(resources)) {
      expect({ id, type: r.Type, deletion: r.DeletionPolicy, replace: r.UpdateReplacePolicy }).toEqual({
        id,
        type: r.Type,
        deletion: 'Retain',
        replace: 'Retain',
      });
    }
  });

  it('caches what each path holds: mutable manifests briefly, immutable ones and modules for a year, JSON compressed', () => {
    // Prepare
    const config = Object.values(storage.findResources('AWS::CloudFront::Distribution'))[0]!.Properties
      .DistributionConfig;
    const resources = storage.toJSON().Resources;
    /** The behaviour CloudFront applies to a path: the first pattern in order that matches, else the default. */
    const served = (path: string) => {
      const b =
        (config.CacheBehaviors as { PathPattern: string }[]).find((c) =>
          cloudFrontMatch(c.PathPattern, path),
        ) ?? config.DefaultCacheBehavior;
      const policy = resources[b.CachePolicyId.Ref]?.Properties.CachePolicyConfig;
      return {
        ttl: policy?.DefaultTTL,
        maxTtl: policy?.MaxTTL,
        compress: b.Compress,
        gzip: policy?.ParametersInCacheKeyAndForwardedToOrigin.EnableAcceptEncodingGzip,
        brotli: policy?.ParametersInCacheKeyAndForwardedToOrigin.EnableAcceptEncodingBrotli,
      };
    };
    const json = { compress: true, gzip: true, brotli: true };
    const year = { ttl: 31_536_000, maxTtl: 31_536_000 };
    // Act / Assess
    expect(served('manifests/v2/index.json')).toEqual({ ttl: 30, maxTtl: 60, ...json });
    expect(served('manifests/latest.json')).toEqual({ ttl: 30, maxTtl: 60, ...json });
    expect(served('manifests/v2/index/17.json')).toEqual({ ...year, ...json });
    expect(served(`manifests/v2/nodes/sha256/${'ab'.repeat(32)}.json`)).toEqual({ ...year, ...json });
    expect(served('manifests/17.json')).toEqual({ ...year, ...json });
    expect(served('keys.json')).toEqual({ ttl: 300, maxTtl: 300, ...json });
    expect(served('index.html')).toEqual({ ttl: 300, maxTtl: 300, ...json });
    // `/` is rewritten to index.html after CloudFront chose the default behaviour.
    expect(served('/')).toEqual({ ttl: 300, maxTtl: 300, ...json });
    expect(served(`modules/sha256/${'ab'.repeat(32)}.wasm`)).toEqual({
      ...year,
      compress: false,
      gzip: false,
      brotli: false,
    });
  });

  it('caches modules without Accept-Encoding in the key (they are served uncompressed)', () => {
    // Act
    const dist = Object.values(storage.findResources('AWS::CloudFront::Distribution'))[0]!;
    const behaviors = dist.Properties.DistributionConfig.CacheBehaviors as {
      PathPattern: string;
      CachePolicyId: { Ref: string };
      Compress: boolean;
    }[];
    const modules = behaviors.find((b) => b.PathPattern === 'modules/*')!;
    // Assess
    expect(modules.Compress).toBe(false);
    const policy = storage.toJSON().Resources[modules.CachePolicyId.Ref];
    expect(policy.Properties.CachePolicyConfig.ParametersInCacheKeyAndForwardedToOrigin).toMatchObject({
      EnableAcceptEncodingGzip: false,
      EnableAcceptEncodingBrotli: false,
    });
    expect(policy.Properties.CachePolicyConfig.DefaultTTL).toBe(31_536_000);
    const manifests = behaviors.find((b) => b.PathPattern === 'manifests/*')!;
    expect(manifests.CachePolicyId.Ref).not.toBe(modules.CachePolicyId.Ref);
  });

  it('has an ECC P-256 signing key whose policy lets only the publisher sign digests with ECDSA_SHA_256', () => {
    // Act
    const keys = storage.findResources('AWS::KMS::Key');
    const [key] = Object.values(keys);
    // Assess
    expect(key).toMatchObject({
      DeletionPolicy: 'Retain',
      Properties: { KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' },
    });
    const statements = key!.Properties.KeyPolicy.Statement as {
      Sid: string;
      Effect: string;
      Action: string | string[];
      Principal: { AWS: unknown };
      Condition?: unknown;
    }[];
    const sign = statements.filter(
      (s) => s.Effect === 'Allow' && [s.Action].flat().some((a) => a === 'kms:Sign' || a === 'kms:*'),
    );
    expect(sign).toHaveLength(1);
    expect(sign[0]!.Principal.AWS).toEqual({
      'Fn::GetAtt': [expect.stringMatching(/^PublisherRole/), 'Arn'],
    });
    expect(sign[0]!.Condition).toEqual({
      StringEquals: { 'kms:SigningAlgorithm': 'ECDSA_SHA_256', 'kms:MessageType': 'DIGEST' },
    });
    const deny = statements.find((s) => s.Effect === 'Deny');
    expect(deny).toMatchObject({
      Action: 'kms:Sign',
      Condition: { ArnNotEquals: { 'aws:PrincipalArn': expect.anything() } },
    });
    // The account administers the key (root) but cannot sign with it.
    const admin = statements.find((s) => s.Sid === 'AccountAdministersButDoesNotSign')!;
    expect([admin.Action].flat()).not.toContain('kms:Sign');
    expect([admin.Action].flat()).not.toContain('kms:*');
  });

  it('creates a retained Secrets Manager secret per secret name in the config', () => {
    // Assess
    for (const name of [
      'GHCR_WEBHOOK_SECRET',
      'HARBOR_WEBHOOK_SECRET',
      'HARBOR_PULL_USER',
      'HARBOR_PULL_PASSWORD',
    ]) {
      storage.hasResource('AWS::SecretsManager::Secret', {
        DeletionPolicy: 'Retain',
        Properties: Match.objectLike({ Name: `wasm-mirror/prod-mesh/${name}` }),
      });
    }
  });
});

describe('pipeline stack', () => {
  it('gives the mirror queue a dead-letter queue and a visibility timeout of six function timeouts', () => {
    pipeline.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 720,
      RedrivePolicy: {
        deadLetterTargetArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^MirrorDeadLetters'), 'Arn'] },
        maxReceiveCount: 5,
      },
      SqsManagedSseEnabled: true,
    });
  });

  it('makes the publish queue FIFO with a FIFO dead-letter queue', () => {
    // Assess
    pipeline.hasResourceProperties('AWS::SQS::Queue', {
      FifoQueue: true,
      ContentBasedDeduplication: true,
      RedrivePolicy: {
        deadLetterTargetArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^PublishDeadLetters'), 'Arn'] },
        maxReceiveCount: 5,
      },
    });
    pipeline.hasResourceProperties('AWS::SQS::Queue', {
      FifoQueue: true,
      MessageRetentionPeriod: 1_209_600,
    });
  });

  it('enforces TLS on every queue', () => {
    // Act
    const policies = Object.values(pipeline.findResources('AWS::SQS::QueuePolicy'));
    // Assess
    expect(policies.length).toBe(4);
    for (const p of policies) {
      expect(JSON.stringify(p.Properties.PolicyDocument)).toContain('"aws:SecureTransport":"false"');
    }
  });

  it('bounds mirror concurrency and reports partial batch failures', () => {
    // Assess
    pipeline.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('^Pulls'),
      ReservedConcurrentExecutions: Match.absent(),
      Timeout: 120,
    });
    pipeline.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: Match.stringLikeRegexp('^MirrorFunction') },
      ScalingConfig: { MaximumConcurrency: 5 },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BatchSize: 1,
    });
    pipeline.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: Match.stringLikeRegexp('^PublishFunction') },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
  });

  it('sizes the mirror function for one module at a time: 2048 MB, /tmp of two modules plus a margin', () => {
    // Act
    const mirrorFn = (t: Template) =>
      Object.values(t.findResources('AWS::Lambda::Function')).find((f) =>
        /^Pulls/.test(f.Properties.Description),
      )!.Properties;
    const defaults = mirrorFn(pipeline);
    // Assess
    expect(defaults.MemorySize).toBe(2048);
    // Default cap 256 MiB.
    expect(defaults.EphemeralStorage.Size).toBeGreaterThanOrEqual(2 * 256 + 256);
    expect(mirrorScratchMiB(256 * 1024 * 1024)).toBe(defaults.EphemeralStorage.Size);

    // Act / Assess: a larger maxModuleSize.
    const big = writeConfig(
      'mirror: { name: big, maxModuleSize: 1GiB }\nsources:\n  - { id: local, type: distribution, registry: "registry.internal:5000", repositories: ["**"], webhookSecretEnv: HOOK }\n',
    );
    const large = mirrorFn(Template.fromStack(synthApp({ config: big }).pipeline));
    expect(large.MemorySize).toBe(2048);
    expect(large.EphemeralStorage.Size).toBeGreaterThanOrEqual(2 * 1024 + 256);
    expect(large.EphemeralStorage.Size).toBeLessThanOrEqual(10_240);
    expect(() => mirrorScratchMiB(6 * 1024 * 1024 * 1024)).toThrow(/maxModuleSize/);
  });

  it('runs every function on ARM64 with tracing, JSON-free defaults and a bounded log group', () => {
    // Act
    const all = Object.entries(pipeline.findResources('AWS::Lambda::Function'));
    // Assess: CDK's own SDK-call function writes the status page (status-page.test.ts); the rest are ours.
    const sdkCall = all.filter(([id]) => id.startsWith(SDK_CALL_FUNCTION));
    expect(sdkCall).toHaveLength(1);
    expect(sdkCall[0]![1].Properties.LoggingConfig).toEqual({ LogGroup: { Ref: expect.any(String) } });
    const fns = all.filter(([id]) => !id.startsWith(SDK_CALL_FUNCTION)).map(([, f]) => f);
    // webhook, mirror, publish, keys.json, canary
    expect(fns).toHaveLength(5);
    for (const f of fns) {
      expect(f.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        TracingConfig: { Mode: 'Active' },
        Handler: 'index.handler',
        LoggingConfig: { LogGroup: expect.anything() },
      });
      expect(f.Properties.Environment.Variables).toMatchObject({
        // The canary sees the mirror only through CloudFront.
        ...(/^Canary/.test(f.Properties.Description) ? {} : { WASM_MIRROR_BUCKET: expect.anything() }),
        NODE_OPTIONS: '--enable-source-maps',
      });
    }
    pipeline.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
    // No managed policies: each role writes to its own log group only.
    for (const role of Object.values(pipeline.findResources('AWS::IAM::Role'))) {
      expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    }
  });

  it('routes POST /hooks/{sourceId} and /hooks/{sourceId}/{token} to the webhook function, throttled, logged without paths', () => {
    // Assess
    pipeline.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: 'POST /hooks/{sourceId}' });
    pipeline.hasResourceProperties('AWS::ApiGatewayV2::Route', {
      RouteKey: 'POST /hooks/{sourceId}/{token}',
    });
    const stage = Object.values(pipeline.findResources('AWS::ApiGatewayV2::Stage'))[0]!;
    expect(stage.Properties.DefaultRouteSettings).toMatchObject({
      ThrottlingRateLimit: 50,
      ThrottlingBurstLimit: 100,
    });
    const format = stage.Properties.AccessLogSettings.Format as string;
    expect(format).toContain('$context.routeKey');
    expect(format).not.toContain('$context.path');
  });

  it('sends ECR push events and the re-sign schedule to the queues', () => {
    // Assess
    pipeline.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.ecr'],
        'detail-type': ['ECR Image Action'],
        detail: { 'action-type': ['PUSH'], result: ['SUCCESS'] },
      },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^MirrorQueue'), 'Arn'] } })],
    });
    pipeline.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(6 hours)',
      Targets: [
        Match.objectLike({
          Input: JSON.stringify({ kind: 'resign', reason: 'schedule' }),
          SqsParameters: { MessageGroupId: 'publish' },
        }),
      ],
    });
  });

  it('writes keys.json through a custom resource bound to the key', () => {
    pipeline.hasResourceProperties('Custom::WasmMirrorKeysJson', {
      ServiceToken: { 'Fn::GetAtt': [Match.stringLikeRegexp('^KeysFunction'), 'Arn'] },
      KeyArn: Match.anyValue(),
      // CloudFormation gives up after 5 minutes, not the default hour.
      ServiceTimeout: '300',
    });
  });

  it('lets the keys function queue the startup re-sign on the publish queue', () => {
    // Act
    const keysFn = Object.values(pipeline.findResources('AWS::Lambda::Function')).find((f) =>
      /^Custom resource/.test(f.Properties.Description),
    )!;
    // Assess
    expect(keysFn.Properties.Environment.Variables.WASM_MIRROR_PUBLISH_QUEUE_URL).toEqual({
      Ref: expect.stringMatching(/^PublishQueue/),
    });
    const keysPolicy = Object.values(pipeline.findResources('AWS::IAM::Policy')).find((p) =>
      p.Properties.Roles.some((r: { Ref: string }) => /^KeysFunctionRole/.test(r.Ref)),
    )!;
    const send = (
      keysPolicy.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[]
    ).find((st) => [st.Action].flat().includes('sqs:SendMessage'))!;
    expect(send.Resource).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/^PublishQueue/), 'Arn'] });
  });

  it('reads secrets by name, never through a cross-stack export; webhook and mirror see only their own', () => {
    // Act
    const template = JSON.stringify(pipeline.toJSON());
    // Assess: the only imports left are the key, role and distribution, never a secret.
    const imports = [...template.matchAll(/"Fn::ImportValue":"([^"]+)"/g)].map((m) => m[1]!);
    for (const name of imports) expect(name).not.toMatch(/Secret|Webhook|Credential/);
    const policyOf = (role: RegExp) =>
      JSON.stringify(
        Object.values(pipeline.findResources('AWS::IAM::Policy')).find((p) =>
          p.Properties.Roles.some((r: { Ref: string }) => role.test(r.Ref)),
        )!.Properties,
      );
    const webhook = policyOf(/^WebhookFunctionRole/);
    const mirror = policyOf(/^MirrorFunctionRole/);
    for (const name of ['GHCR_WEBHOOK_SECRET', 'HARBOR_WEBHOOK_SECRET']) {
      expect(webhook).toContain(`:secret:wasm-mirror/prod-mesh/${name}-??????`);
      expect(mirror).not.toContain(name);
    }
    for (const name of ['HARBOR_PULL_USER', 'HARBOR_PULL_PASSWORD']) {
      expect(mirror).toContain(`:secret:wasm-mirror/prod-mesh/${name}-??????`);
      expect(webhook).not.toContain(name);
    }
    expect(webhook).toContain('secretsmanager:GetSecretValue');
    expect(webhook).toContain('{"Ref":"AWS::Partition"}');
  });

  it('scopes the ECR pull grant to the configured registries, -fips and .cn hosts included', () => {
    // Prepare
    const path = writeConfig(
      [
        'mirror: { name: ecr-hosts }',
        'sources:',
        '  - { id: fips, type: ecr, registry: "111122223333.dkr.ecr-fips.us-east-1.amazonaws.com", repositories: ["**"] }',
        '  - { id: cn, type: ecr, registry: "444455556666.dkr.ecr.cn-north-1.amazonaws.com.cn", repositories: ["**"] }',
        '',
      ].join('\n'),
    );
    // Act
    const policies = JSON.stringify(Template.fromStack(synthApp({ config: path }).pipeline).toJSON());
    // Assess
    expect(policies).toContain(':ecr:us-east-1:111122223333:repository/*');
    expect(policies).toContain(':ecr:cn-north-1:444455556666:repository/*');
    expect(policies).toContain('ecr:GetAuthorizationToken');
  });

  it('alarms on dead letters, function errors and manifest age', () => {
    // Act
    const alarms = Object.values(pipeline.findResources('AWS::CloudWatch::Alarm'));
    // Assess: operations.test.ts covers the others: queue ages, throttles, webhook 5xx and 401s, the
    // canary; registry-api.test.ts the registry view's.
    expect(alarms).toHaveLength(17);
    pipeline.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [
        {
          Name: 'QueueName',
          Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^MirrorDeadLetters'), 'QueueName'] },
        },
      ],
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    });
    pipeline.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'Errors',
      Namespace: 'AWS/Lambda',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: Match.stringLikeRegexp('^MirrorFunction') } }],
    });
    pipeline.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'manifest_age_seconds',
      Namespace: 'WasmMirror',
      Dimensions: Match.arrayWith([
        { Name: 'mirror', Value: 'prod-mesh' },
        { Name: 'service', Value: 'wasm-mirror' },
      ]),
      Statistic: 'Maximum',
      Period: 43_200,
      // 48h TTL, re-signed from 24h before expiry: alarm with 12h left.
      Threshold: 36 * 3600,
      TreatMissingData: 'breaching',
    });
  });

  it('grants each function only its prefix of the bucket, and the publisher no KMS by IAM', () => {
    // Act
    const policies = Object.values(pipeline.findResources('AWS::IAM::Policy')).map((p) =>
      JSON.stringify(p.Properties),
    );
    // Assess
    const webhook = policies.find((p) => p.includes('WebhookFunctionRole'))!;
    expect(webhook).toContain('/state/deliveries/*');
    expect(webhook).not.toContain('/state/*');
    expect(webhook).not.toContain('/manifests/*');
    expect(webhook).not.toContain('kms:');
    const mirror = policies.find((p) => p.includes('MirrorFunctionRole'))!;
    expect(mirror).toContain('/modules/*');
    expect(mirror).not.toContain('kms:');
    for (const p of policies) expect(p).not.toContain('kms:Sign');
    for (const p of policies) expect(p).not.toMatch(/"s3:\*"|s3:GetObject\*|s3:Delete\*/);
    // Deleting is garbage collection, the publisher's alone (least-privilege.test.ts has the keys).
    const deleting = policies.filter((p) => p.includes('s3:DeleteObject'));
    expect(deleting).toHaveLength(1);
    expect(deleting[0]).toContain('PublishSignerRolePolicy');
  });

  it('outputs the webhook base URL, the mirror URL and the key ARN', () => {
    expect(Object.keys(pipeline.findOutputs('*'))).toEqual(
      expect.arrayContaining(['WebhookBaseUrl', 'MirrorUrl', 'SigningKeyArn']),
    );
  });
});

describe('deployment input', () => {
  it('takes the config file from -c config=FILE', () => {
    // Prepare
    const path = writeConfig(
      'mirror: { name: staging, manifestTtl: 4h }\nsources:\n  - { id: local, type: distribution, registry: "registry.internal:5000", repositories: ["**"], webhookSecretEnv: HOOK }\n',
    );
    // Act
    const stacks = synthApp({ config: path, mirrorConcurrency: 3, reserveConcurrency: 'false' });
    // Assess
    expect(stacks.pipeline.stackName).toBe('WasmMirror-staging-Pipeline');
    const t = Template.fromStack(stacks.pipeline);
    // No ecr source, no ECR rule: only the re-sign schedule and the canary's.
    t.resourceCountIs('AWS::Events::Rule', 2);
    expect(JSON.stringify(t.findResources('AWS::Events::Rule'))).not.toContain('aws.ecr');
    t.hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: 'rate(30 minutes)' });
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: 3 } });
    const fns = Object.values(t.findResources('AWS::Lambda::Function'));
    expect(fns.length).toBeGreaterThan(0);
    for (const f of fns) {
      expect(f.Properties.ReservedConcurrentExecutions).toBeUndefined();
    }
  });

  it('schedules a reconcile per source that asks for one, and lets the mirror queue its jobs', () => {
    // Prepare
    const path = writeConfig(
      'mirror: { name: rec }\nsources:\n  - { id: hub, type: dockerhub, registry: "docker.io", repositories: ["acme/filter"], webhookSecretEnv: HOOK, reconcileInterval: 15m }\n',
    );
    // Act
    const t = Template.fromStack(synthApp({ config: path }).pipeline);
    // Assess
    t.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(15 minutes)',
      Targets: [Match.objectLike({ Input: JSON.stringify({ kind: 'reconcile', sourceId: 'hub' }) })],
    });
    const mirrorFn = Object.values(t.findResources('AWS::Lambda::Function')).find((f) =>
      /Pulls, verifies/.test(f.Properties.Description),
    )!;
    expect(Object.keys(mirrorFn.Properties.Environment.Variables)).toContain('WASM_MIRROR_MIRROR_QUEUE_URL');
    const policies = JSON.stringify(t.findResources('AWS::IAM::Policy'));
    expect(policies).toContain('state/pulled/*');
    expect(policies).toContain('state/rejected/*');
  });

  it('rotates keys in two steps: publish the next key, then sign with it; old keys stay', () => {
    // Prepare
    const keyLogicalIds = (t: Template) => Object.keys(t.findResources('AWS::KMS::Key')).sort();
    const publishEnv = (t: Template, description: RegExp) =>
      Object.values(t.findResources('AWS::Lambda::Function')).find((f) =>
        description.test(f.Properties.Description),
      )!.Properties.Environment.Variables;
    // Act: step 1 publishes the next key.
    const step1 = synthApp({ signingKeyGeneration: 2, activeSigningKeyGeneration: 1 });
    const storage1 = Template.fromStack(step1.storage);
    const pipeline1 = Template.fromStack(step1.pipeline);
    const [key1, key2] = keyLogicalIds(storage1);
    // Assess
    expect([key1, key2]).toEqual([
      expect.stringMatching(/^SigningKey[0-9A-F]{8}$/),
      expect.stringMatching(/^SigningKeyV2/),
    ]);
    // Still signing with key 1; keys.json lists both, so agents can learn key 2 first.
    expect(JSON.stringify(publishEnv(pipeline1, /^Folds/).WASM_MIRROR_SIGNING_KEY_ID)).toContain(key1!);
    const keysEnv = JSON.stringify(publishEnv(pipeline1, /^Custom resource/).WASM_MIRROR_PUBLISHED_KEY_IDS);
    expect(keysEnv).toContain(key1!);
    expect(keysEnv).toContain(key2!);

    // The keys function reads every key it lists, not only the active one (a statement per key).
    const keysStatements = Object.values(pipeline1.findResources('AWS::IAM::Policy'))
      .flatMap((p) => p.Properties.PolicyDocument.Statement as { Action: string[]; Resource: unknown }[])
      .filter((st) => [st.Action].flat().includes('kms:GetPublicKey'));
    for (const st of keysStatements) {
      expect([st.Action].flat().sort()).toEqual(['kms:DescribeKey', 'kms:GetPublicKey']);
    }
    const keyResources = JSON.stringify(keysStatements.map((st) => st.Resource));
    expect(keyResources).toContain(key1!);
    expect(keyResources).toContain(key2!);

    // Act / Assess: step 2 signs with the next key; both keys stay.
    const step2 = synthApp({ signingKeyGeneration: 2 });
    expect(keyLogicalIds(Template.fromStack(step2.storage))).toEqual([key1, key2]);
    expect(
      JSON.stringify(publishEnv(Template.fromStack(step2.pipeline), /^Folds/).WASM_MIRROR_SIGNING_KEY_ID),
    ).toContain(key2!);
  });

  it('refuses an invalid config with an error naming the key', () => {
    const path = writeConfig('mirror: { name: x, manifestTl: 4h }\n');
    expect(() => synthApp({ config: path })).toThrow(/manifestTl/);
  });

  it('re-signs a quarter of the re-sign window before expiry, within bounds', () => {
    // Act / Assess
    expect(resignInterval(24 * 3600_000).toHumanString()).toBe('6 hours');
    expect(resignInterval(60_000).toHumanString()).toBe('5 minutes');
    expect(resignInterval(30 * 24 * 3600_000).toHumanString()).toBe('12 hours');
  });
});

/** CloudFront path patterns: `*` any run of characters (slashes included), `?` one; case-sensitive. */
function cloudFrontMatch(pattern: string, path: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^/?${re}$`).test(path);
}
