/**
 * What outlives a redeploy: the bucket agents read, the signing key agents trust, the CloudFront
 * URL agents are configured with, the role allowed to sign, and the secrets operators fill in.
 * Everything here is retained on stack deletion; the pipeline stack can be torn down and
 * rebuilt freely.
 */
import { createHash } from 'node:crypto';
import {
  ArnFormat,
  Aws,
  CfnCondition,
  CfnOutput,
  CfnResource,
  Duration,
  Fn,
  type ICfnConditionExpression,
  RemovalPolicy,
  Stack,
  type StackProps,
  Validations,
} from 'aws-cdk-lib';
import {
  AllowedMethods,
  CachePolicy,
  Function as CfFunction,
  type CfnDistribution,
  Distribution,
  FunctionCode,
  FunctionEventType,
  HttpVersion,
  PriceClass,
  ResponseHeadersPolicy,
  S3OriginAccessControl,
  ViewerProtocolPolicy,
} from 'aws-cdk-lib/aws-cloudfront';
import { S3BucketOrigin } from 'aws-cdk-lib/aws-cloudfront-origins';
import {
  AccountRootPrincipal,
  AnyPrincipal,
  Effect,
  PolicyDocument,
  PolicyStatement,
  Role,
  ServicePrincipal,
} from 'aws-cdk-lib/aws-iam';
import { Alias, Key, KeySpec, KeyUsage } from 'aws-cdk-lib/aws-kms';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership } from 'aws-cdk-lib/aws-s3';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { RegionInfo } from 'aws-cdk-lib/region-info';
import type { Construct } from 'constructs';
import { v2Keys } from '../../shared/core/manifest/v2.ts';
import {
  publishedPrefixes,
  registryKeys,
  statePrefixes,
  storageKeys,
} from '../../shared/core/storage-keys.ts';
import { registryRequestCode, registryResponseCode } from './cloudfront-functions.ts';
import type { Deployment } from './deployment.ts';
import { mirrorBucketName, publishFunctionName, secretNames, secretsPrefix } from './deployment.ts';
import { keepLogicalId } from './logical-id.ts';

export interface StorageStackProps extends StackProps {
  readonly deployment: Deployment;
}

/** Key administration without use: the account can manage the key but only the signer can sign. */
const KEY_ADMIN_ACTIONS = [
  'kms:Create*',
  'kms:Describe*',
  'kms:Enable*',
  'kms:List*',
  'kms:Put*',
  'kms:Update*',
  'kms:Revoke*',
  'kms:Disable*',
  'kms:Get*',
  'kms:Delete*',
  'kms:TagResource',
  'kms:UntagResource',
  'kms:ScheduleKeyDeletion',
  'kms:CancelKeyDeletion',
  'kms:Verify',
];

export class StorageStack extends Stack {
  readonly bucket: Bucket;
  readonly logsBucket: Bucket;
  /** The key the publisher signs with. */
  readonly signingKey: Key;
  /** Every generation's key, oldest first; keys.json lists them all. */
  readonly signingKeys: Key[];
  readonly signerRole: Role;
  readonly distribution: Distribution;
  readonly secrets: Secret[];
  private readonly mirrorName: string;

  constructor(scope: Construct, id: string, props: StorageStackProps) {
    super(scope, id, props);
    const { config } = props.deployment;
    this.mirrorName = config.mirror.name;

    this.logsBucket = new Bucket(this, 'AccessLogs', {
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      encryption: BucketEncryption.S3_MANAGED,
      // CloudFront standard logs are delivered with ACLs; S3 access logs need none.
      objectOwnership: ObjectOwnership.OBJECT_WRITER,
      lifecycleRules: [{ expiration: Duration.days(90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(this.logsBucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'This is the access-log bucket; logging its own access would log forever.',
    });

    this.bucket = new Bucket(this, 'MirrorBucket', {
      bucketName: mirrorBucketName(config.mirror.name),
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      encryption: BucketEncryption.S3_MANAGED,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      serverAccessLogsBucket: this.logsBucket,
      serverAccessLogsPrefix: 's3/mirror/',
      lifecycleRules: [
        { id: 'AbortIncompleteUploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
        // Only the index, latest.json, keys.json and state notes are ever replaced, and only module
        // bytes unlisted for longer than a manifest lives are deleted: keep a month of their history.
        { id: 'ExpireReplacedVersions', noncurrentVersionExpiration: Duration.days(30) },
        // Webhook delivery ids only need to outlive the senders' retry windows.
        { id: 'ExpireDeliveryMarkers', prefix: statePrefixes.deliveries, expiration: Duration.days(7) },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.bucket.addToResourcePolicy(createOnlyStatement(this.bucket));

    this.signerRole = new Role(this, 'PublisherRole', {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
      description: 'Assumed by the publish function; the only principal the signing key lets sign.',
      inlinePolicies: { OnlyThePublishFunctionSigns: this.signFromPublishFunctionOnly() },
    });

    const { signingKeyGeneration, activeSigningKeyGeneration } = props.deployment;
    // Keys are never removed from the stack: agents may still trust an older one, and a stack
    // export in use cannot be deleted. Retire a key by disabling it in KMS.
    this.signingKeys = Array.from({ length: signingKeyGeneration }, (_, i) => this.createSigningKey(i + 1));
    this.signingKey = this.signingKeys[activeSigningKeyGeneration - 1]!;
    new Alias(this, 'SigningKeyAlias', {
      aliasName: `alias/wasm-mirror/${config.mirror.name}`,
      targetKey: this.signingKey,
    });

    this.distribution = this.createDistribution(
      props.deployment.cloudFrontLogging,
      config.sources.map((s) => s.id),
    );

    const prefix = secretsPrefix(config);
    const names = secretNames(config);
    this.secrets = [
      ...names.webhook.map(
        (name) =>
          new Secret(this, `Webhook-${name}`, {
            secretName: `${prefix}${name}`,
            description: `Webhook secret ${name} for ${config.mirror.name}; give this value to the registry.`,
            // Generated once; the operator copies it into the registry's webhook settings.
            generateSecretString: { passwordLength: 40, excludePunctuation: true },
            removalPolicy: RemovalPolicy.RETAIN,
          }),
      ),
      ...names.credentials.map(
        (name) =>
          new Secret(this, `Credential-${name}`, {
            secretName: `${prefix}${name}`,
            description: `Registry pull credential ${name} for ${config.mirror.name}; set it to the registry's value.`,
            removalPolicy: RemovalPolicy.RETAIN,
          }),
      ),
    ];
    for (const secret of this.secrets) {
      Validations.of(secret).acknowledge({
        id: 'AwsSolutions-SMG4',
        reason:
          'Webhook secrets and registry credentials are shared with third-party registries; they are rotated by hand together with the registry side (see infra/README.md).',
      });
    }

    new CfnOutput(this, 'MirrorUrl', {
      value: `https://${this.distribution.distributionDomainName}`,
      description: 'Agents and Istio fetch manifests/, modules/ and keys.json here.',
    });
    new CfnOutput(this, 'SigningKeyArn', {
      value: this.signingKey.keyArn,
      description: 'KMS key signing manifests.',
    });
    new CfnOutput(this, 'BucketName', { value: this.bucket.bucketName });

    // Retain everything, not only the bucket and keys: the bucket policy keeps TLS enforced and
    // CloudFront's read access on the retained bucket, the distribution keeps the URL agents are
    // configured with (its cache policies, function and origin access control go with it), the
    // key policies name the publisher role, and the alias is how operators find the active key.
    for (const child of this.node.findAll()) {
      if (child instanceof CfnResource) child.applyRemovalPolicy(RemovalPolicy.RETAIN);
    }
  }

  /**
   * Only the publish function signs, not any function that could be given this role.
   * `lambda:SourceFunctionArn` is not available in resource-based policies, so the key policy
   * cannot test it; instead the key policy trusts this role alone and the role's own policy denies
   * kms:Sign to any caller but the publish function. That deny lives here, retained with the role,
   * so it also holds while the pipeline stack is absent or being replaced. This stack is deployed
   * before the pipeline and never reads from it, hence the function's fixed name rather than a
   * reference. The name is only as exclusive as lambda:CreateFunction: while the pipeline is
   * deployed the publish function holds it.
   */
  private signFromPublishFunctionOnly(): PolicyDocument {
    const publishFunctionArn = this.formatArn({
      service: 'lambda',
      resource: 'function',
      resourceName: publishFunctionName(this.mirrorName),
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    return new PolicyDocument({
      statements: [
        new PolicyStatement({
          sid: 'SignOnlyFromThePublishFunction',
          effect: Effect.DENY,
          actions: ['kms:Sign'],
          resources: ['*'],
          // Absent from the request (not a Lambda function's call) counts as not matching: denied.
          conditions: {
            ArnNotLike: { 'lambda:SourceFunctionArn': [publishFunctionArn, `${publishFunctionArn}:*`] },
          },
        }),
      ],
    });
  }

  private createSigningKey(generation: number): Key {
    return new Key(this, generation === 1 ? 'SigningKey' : `SigningKeyV${generation}`, {
      description: `Wasm Mirror manifest signing key for ${this.mirrorName} (generation ${generation})`,
      keySpec: KeySpec.ECC_NIST_P256,
      keyUsage: KeyUsage.SIGN_VERIFY,
      removalPolicy: RemovalPolicy.RETAIN,
      pendingWindow: Duration.days(30),
      policy: new PolicyDocument({
        statements: [
          new PolicyStatement({
            sid: 'AccountAdministersButDoesNotSign',
            principals: [new AccountRootPrincipal()],
            actions: KEY_ADMIN_ACTIONS,
            resources: ['*'],
          }),
          new PolicyStatement({
            sid: 'OnlyThePublisherSignsDigests',
            principals: [this.signerRole],
            actions: ['kms:Sign'],
            resources: ['*'],
            conditions: {
              StringEquals: { 'kms:SigningAlgorithm': 'ECDSA_SHA_256', 'kms:MessageType': 'DIGEST' },
            },
          }),
          new PolicyStatement({
            sid: 'PublisherReadsThePublicKey',
            principals: [this.signerRole],
            actions: ['kms:GetPublicKey', 'kms:DescribeKey'],
            resources: ['*'],
          }),
          new PolicyStatement({
            sid: 'NoOneElseSigns',
            effect: Effect.DENY,
            principals: [new AccountRootPrincipal()],
            actions: ['kms:Sign'],
            resources: ['*'],
            conditions: { ArnNotEquals: { 'aws:PrincipalArn': this.signerRole.roleArn } },
          }),
        ],
      }),
    });
  }

  private createDistribution(logging: boolean, sourceIds: string[]): Distribution {
    // Origin access control names are unique per account across regions (CloudFront is global),
    // so the name carries the region; the ID is the one CDK gave the OAC it created before.
    const originAccessControl = new S3OriginAccessControl(this, 'OriginAccessControl', {
      originAccessControlName: `${withHash(this.stackName, 44)}-${Aws.REGION}`,
      description: `Wasm Mirror ${this.mirrorName}: CloudFront reads the mirror bucket`,
    });
    keepLogicalId(originAccessControl, 'MirrorCdnOrigin1S3OriginAccessControl25DCD5F4');
    const origin = S3BucketOrigin.withOriginAccessControl(this.bucket, { originAccessControl });
    const immutable = new CachePolicy(this, 'ImmutableCache', {
      comment: 'Numbered manifests, v2 index versions and v2 nodes never change.',
      defaultTtl: Duration.days(365),
      minTtl: Duration.days(1),
      maxTtl: Duration.days(365),
      enableAcceptEncodingGzip: true,
      enableAcceptEncodingBrotli: true,
    });
    const latest = new CachePolicy(this, 'LatestManifestCache', {
      comment: 'manifests/v2/index.json and latest.json change on every publish; agents poll them.',
      defaultTtl: Duration.seconds(30),
      minTtl: Duration.seconds(0),
      maxTtl: Duration.seconds(60),
      enableAcceptEncodingGzip: true,
      enableAcceptEncodingBrotli: true,
    });
    // Modules are stored and served uncompressed (compress: false), so Accept-Encoding stays out
    // of the cache key: one cached copy per module instead of one per encoding a client asks for.
    const modules = new CachePolicy(this, 'ModuleCache', {
      comment: 'Content-addressed module bytes, served exactly as stored.',
      defaultTtl: Duration.days(365),
      minTtl: Duration.days(1),
      maxTtl: Duration.days(365),
      enableAcceptEncodingGzip: false,
      enableAcceptEncodingBrotli: false,
    });
    // The registry API's: a tag follows the signed manifest within a minute, as the index does,
    // and a digest no listed entry reaches any more stops being served as soon (CloudFront
    // revalidates with S3). Sent as stored, so Accept-Encoding stays out of the key: one cached
    // copy per blob, not one per encoding.
    const registry = new CachePolicy(this, 'RegistryCache', {
      comment: 'The registry API under /v2/: tags and digests as the newest signed manifest lists them.',
      defaultTtl: Duration.seconds(30),
      minTtl: Duration.seconds(0),
      maxTtl: Duration.seconds(60),
      enableAcceptEncodingGzip: false,
      enableAcceptEncodingBrotli: false,
    });
    // Shared by keys.json and the status page rather than one more policy: CloudFront allows 20
    // custom cache policies per account, and every mirror (in every region) takes its own.
    const keys = new CachePolicy(this, 'KeysCache', {
      comment: 'keys.json (changes when a key is added) and the status page (changes on a deploy).',
      defaultTtl: Duration.minutes(5),
      minTtl: Duration.seconds(0),
      maxTtl: Duration.minutes(5),
      // CloudFront compresses only what a cache policy keys by Accept-Encoding.
      enableAcceptEncodingGzip: true,
      enableAcceptEncodingBrotli: true,
    });
    // Only the published paths and the status page are served; anything else in the bucket
    // (state/, blobs/, and registry/ except through /v2/) is a 404, and so is /status, which
    // only the embedded server has.
    const notFound = new CfFunction(this, 'NotFound', {
      comment: `Serves / as ${STATUS_PAGE_KEY}; 404 outside it, manifests/, modules/ and keys.json`,
      code: FunctionCode.fromInline(VIEWER_REQUEST_CODE),
    });
    const base = {
      origin,
      viewerProtocolPolicy: ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
      allowedMethods: AllowedMethods.ALLOW_GET_HEAD,
      responseHeadersPolicy: ResponseHeadersPolicy.SECURITY_HEADERS,
    };
    // The read-only registry API: one function maps /v2/… to registry/ objects (and answers
    // /v2/, writes and malformed paths itself), the other sets the registry's headers.
    const registryRequest = new CfFunction(this, 'RegistryRequest', {
      comment: 'Maps /v2/<source>/<repository>/… to registry/ objects; 405 for writes',
      code: FunctionCode.fromInline(registryRequestCode(sourceIds)),
    });
    const registryResponse = new CfFunction(this, 'RegistryResponse', {
      comment: 'Docker-Content-Digest and Link from registry/ object metadata',
      code: FunctionCode.fromInline(registryResponseCode()),
    });
    const distribution = new Distribution(this, 'MirrorCdn', {
      comment: `Wasm Mirror ${this.stackName}`,
      httpVersion: HttpVersion.HTTP2_AND_3,
      priceClass: PriceClass.PRICE_CLASS_100,
      ...(logging
        ? { enableLogging: true, logBucket: this.logsBucket, logFilePrefix: CLOUDFRONT_LOG_PREFIX }
        : {}),
      // CloudFront picks the behaviour before the function rewrites the path, so `/` is fetched
      // (as index.html) under this one, the only request that reaches the bucket through it.
      // Hence the page's cache policy and compression here too.
      defaultBehavior: {
        ...base,
        cachePolicy: keys,
        compress: true,
        functionAssociations: [{ function: notFound, eventType: FunctionEventType.VIEWER_REQUEST }],
      },
      // CloudFront takes the first pattern that matches, in this order.
      additionalBehaviors: {
        // Before manifests/*, so they win: the only short-lived manifests.
        [v2Keys.index]: { ...base, cachePolicy: latest, compress: true },
        [storageKeys.latestManifest]: { ...base, cachePolicy: latest, compress: true },
        // manifests/v2/index/<n>.json, manifests/v2/nodes/sha256/<hex>.json and v1's numbered
        // manifests: written once, JSON, compressed on the way out.
        [`${publishedPrefixes.manifests}*`]: { ...base, cachePolicy: immutable, compress: true },
        // Module bytes go out exactly as stored; agents check their sha256.
        [`${publishedPrefixes.modules}*`]: { ...base, cachePolicy: modules, compress: false },
        [storageKeys.keys]: { ...base, cachePolicy: keys, compress: true },
        // The page carries its own CSP in a meta element (script and style by hash).
        [STATUS_PAGE_KEY]: { ...base, cachePolicy: keys, compress: true },
        // Every method reaches the function, which answers all but GET and HEAD with 405 itself.
        // Served exactly as stored: digests are of these bytes, and blobs take byte ranges.
        'v2*': {
          ...base,
          allowedMethods: AllowedMethods.ALLOW_ALL,
          cachePolicy: registry,
          compress: false,
          functionAssociations: [
            { function: registryRequest, eventType: FunctionEventType.VIEWER_REQUEST },
            { function: registryResponse, eventType: FunctionEventType.VIEWER_RESPONSE },
          ],
        },
      },
      // A key the bucket does not hold is a 403 from S3 (CloudFront may not list it): answered
      // as what it is, a 404, with a registry error document, for /v2/ and the published paths.
      errorResponses: [403, 404].map((httpStatus) => ({
        httpStatus,
        responseHttpStatus: 404,
        responsePagePath: `/${registryKeys.notFound}`,
        ttl: Duration.seconds(10),
      })),
    });
    Validations.of(distribution).acknowledge(
      {
        id: 'AwsSolutions-CFR1',
        reason:
          'Mesh agents run wherever the operator runs clusters; geo restriction is left to the operator.',
      },
      {
        id: 'AwsSolutions-CFR2',
        reason:
          'Read-only, signed, content-addressed objects with no origin compute behind them; a WAF adds cost without protecting anything an agent does not verify. Attach one with webAclId if your policy requires it.',
      },
      {
        id: 'AwsSolutions-CFR4',
        reason:
          'The default *.cloudfront.net certificate fixes the TLS policy; integrity does not rest on TLS (manifests are signed, modules checked by sha256). Use a custom domain and certificate to raise the minimum protocol.',
      },
    );
    if (logging) this.loggingOutsideOptInRegions(distribution);
    else {
      Validations.of(distribution).acknowledge({
        id: 'AwsSolutions-CFR3',
        reason:
          'Switched off with -c cloudFrontLogging=false (a region whose buckets CloudFront standard logging cannot deliver to); agent-facing errors remain in the CloudFront metrics on the dashboard.',
      });
    }
    return distribution;
  }

  /**
   * CloudFront standard logging cannot deliver to buckets in opt-in regions (af-south-1,
   * ap-east-1, …), and the log bucket is in this stack's region: there the distribution goes
   * without logs. A condition rather than a synth-time check, so the same template is right in
   * whichever region it is deployed. A region opted in after this CDK version was released is not
   * in the list: deploy there with -c cloudFrontLogging=false.
   */
  private loggingOutsideOptInRegions(distribution: Distribution): void {
    const optIn = RegionInfo.regions
      .filter((r) => r.isOptInRegion)
      .map((r) => r.name)
      .sort();
    const available = new CfnCondition(this, 'StandardLoggingAvailable', {
      expression: Fn.conditionNot(anyOf(optIn.map((region) => Fn.conditionEquals(Aws.REGION, region)))),
    });
    (distribution.node.defaultChild as CfnDistribution).addPropertyOverride(
      'DistributionConfig.Logging',
      Fn.conditionIf(
        available.logicalId,
        {
          Bucket: this.logsBucket.bucketRegionalDomainName,
          IncludeCookies: false,
          Prefix: CLOUDFRONT_LOG_PREFIX,
        },
        Aws.NO_VALUE,
      ),
    );
  }
}

const CLOUDFRONT_LOG_PREFIX = 'cloudfront/';

/** The status page (shared/status-page), a static object at the bucket root, served at `/`. */
export const STATUS_PAGE_KEY = 'index.html';

/**
 * The default behaviour's viewer-request function (CloudFront Functions, cloudfront-js-1.0, so
 * ES5): `/` becomes the status page and everything else is a 404. The page, the published
 * layout and the error document CloudFront answers missing keys with pass through unchanged,
 * though their own behaviours catch most of them first, so the function stays right whichever
 * behaviour it is attached to.
 */
export const VIEWER_REQUEST_CODE = `function handler(event) {
  var request = event.request;
  var uri = request.uri;
  if (uri === '/') {
    request.uri = '/${STATUS_PAGE_KEY}';
    return request;
  }
  if (uri === '/${STATUS_PAGE_KEY}' || uri === '/${storageKeys.keys}') return request;
  if (uri === '/${registryKeys.notFound}') return request;
  if (uri.indexOf('/${publishedPrefixes.manifests}') === 0) return request;
  if (uri.indexOf('/${publishedPrefixes.modules}') === 0) return request;
  return { statusCode: 404, statusDescription: 'Not Found' };
}`;

/**
 * Create-only holds in storage, not only in code: a PutObject (or CompleteMultipartUpload) without
 * If-None-Match is refused everywhere except the few keys that are meant to be replaced
 * (manifests/v2/index.json, latest.json, keys.json, index.html, the error document, the
 * registry view under registry/, the pipeline's state/ notes). So
 * modules/, every numbered manifest and index version and every v2 node can be written once and
 * never overwritten, whoever holds write access. The parts of a multipart
 * upload carry no conditional header and are let through by s3:ObjectCreationOperation (false
 * for CreateMultipartUpload and UploadPart); the completion carries If-None-Match and is checked.
 * CopyObject into these keys no longer works; only the registry view, which is replaceable, uses it.
 */
function createOnlyStatement(bucket: Bucket): PolicyStatement {
  const replaceable = [
    v2Keys.index,
    storageKeys.latestManifest,
    storageKeys.keys,
    // Unsigned and read by people, not agents; every deploy writes the page it was built with.
    STATUS_PAGE_KEY,
    registryKeys.notFound,
    // The registry view is derived from each signed manifest and follows it: a tag's object is
    // replaced when the tag moves. Only the publish function may write it, and clients check
    // every manifest and blob against its digest.
    `${registryKeys.prefix}*`,
    ...Object.values(statePrefixes).map((prefix) => `${prefix}*`),
  ];
  return new PolicyStatement({
    sid: 'CreateOnlyExceptLatestKeysAndState',
    effect: Effect.DENY,
    principals: [new AnyPrincipal()],
    actions: ['s3:PutObject'],
    notResources: replaceable.map((key) => bucket.arnForObjects(key)),
    conditions: {
      Null: { 's3:if-none-match': 'true' },
      Bool: { 's3:ObjectCreationOperation': 'true' },
    },
  });
}

/** Fn::Or takes at most ten conditions; more are nested. */
function anyOf(conditions: ICfnConditionExpression[]): ICfnConditionExpression {
  if (conditions.length === 1) return conditions[0]!;
  if (conditions.length <= 10) return Fn.conditionOr(...conditions);
  const groups: ICfnConditionExpression[] = [];
  for (let i = 0; i < conditions.length; i += 10) groups.push(anyOf(conditions.slice(i, i + 10)));
  return anyOf(groups);
}

/** `text` cut to `max` characters, with a hash of the whole so two cut names never collide. */
function withHash(text: string, max: number): string {
  if (text.length <= max) return text;
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 8);
  return `${text.slice(0, max - 9)}-${hash}`;
}
