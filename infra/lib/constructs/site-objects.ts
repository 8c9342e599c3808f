/**
 * Static objects a deploy writes: the status page (index.html at the bucket root, which
 * CloudFront serves at `/`) and the registry error document CloudFront answers a missing key
 * with. Each is built at synth time and travels in the template, so a deploy writes the objects
 * of the code it deploys, and only those that changed. SDK calls rather than a BucketDeployment:
 * their function may put these keys and nothing else, where a BucketDeployment's may read,
 * overwrite and delete the whole bucket.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import {
  AwsCustomResource,
  AwsCustomResourcePolicy,
  type AwsSdkCall,
  Logging,
  PhysicalResourceId,
} from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { registryKeys } from '../../../shared/core/storage-keys.ts';
import { STATUS_PAGE_KEY } from '../storage-stack.ts';

export interface SiteObjectsProps {
  readonly bucket: IBucket;
  /** The status page document, from `statusPageHtml()` (shared/status-page/page.ts); none without it. */
  readonly html?: string;
}

/** Browsers and CloudFront both keep the page five minutes, as the KeysCache policy does. */
export const STATUS_PAGE_CACHE_CONTROL = 'public, max-age=300';

/**
 * What CloudFront answers a key the bucket does not hold with (as a 404): a registry error
 * document, since `/v2/` clients read one; agents and browsers only need the status.
 */
export const REGISTRY_NOT_FOUND_BODY = `${JSON.stringify({
  errors: [
    {
      code: 'MANIFEST_UNKNOWN',
      message:
        'not found: this mirror serves only what its newest signed manifest lists, and the manifests and blobs those entries reach',
    },
  ],
})}\n`;

interface StaticObject {
  id: string;
  resourceType: string;
  key: string;
  body: string;
  contentType: string;
  cacheControl: string;
}

export class SiteObjects extends Construct {
  readonly role: Role;
  readonly logGroup: LogGroup;

  constructor(scope: Construct, id: string, props: SiteObjectsProps) {
    super(scope, id);
    this.logGroup = new LogGroup(this, 'Logs', {
      retention: RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // An own role without the AWSLambdaBasicExecutionRole managed policy: this log group only.
    // One role for every object: the SDK-call provider is one function per stack.
    this.role = new Role(this, 'Role', {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
      description: 'Wasm Mirror status page and error document writer',
    });
    this.logGroup.grantWrite(this.role);

    const objects: StaticObject[] = [
      {
        id: 'ErrorDocument',
        resourceType: 'Custom::WasmMirrorErrorDocument',
        key: registryKeys.notFound,
        body: REGISTRY_NOT_FOUND_BODY,
        contentType: 'application/json; charset=utf-8',
        cacheControl: 'no-cache',
      },
    ];
    if (props.html !== undefined) {
      objects.push({
        id: 'StatusPage',
        resourceType: 'Custom::WasmMirrorStatusPage',
        key: STATUS_PAGE_KEY,
        body: props.html,
        contentType: 'text/html; charset=utf-8',
        cacheControl: STATUS_PAGE_CACHE_CONTROL,
      });
    }
    for (const object of objects) this.write(props.bucket, object);
  }

  private write(bucket: IBucket, object: StaticObject): void {
    const put: AwsSdkCall = {
      service: 'S3',
      action: 'PutObject',
      parameters: {
        Bucket: bucket.bucketName,
        Key: object.key,
        Body: object.body,
        ContentType: object.contentType,
        CacheControl: object.cacheControl,
      },
      physicalResourceId: PhysicalResourceId.of(`${bucket.bucketName}/${object.key}`),
      // The request carries the whole document; the logs need not.
      logging: Logging.withDataHidden(),
      outputPaths: ['ETag'],
    };
    new AwsCustomResource(this, object.id, {
      resourceType: object.resourceType,
      // No onDelete: like keys.json, the object stays with the retained bucket.
      onCreate: put,
      onUpdate: put,
      policy: AwsCustomResourcePolicy.fromStatements([
        new PolicyStatement({ actions: ['s3:PutObject'], resources: [bucket.arnForObjects(object.key)] }),
      ]),
      role: this.role,
      logGroup: this.logGroup,
      // The runtime's SDK, not one fetched from npm at deploy time.
      installLatestAwsSdk: false,
      timeout: Duration.minutes(1),
      // Should the call never answer, the deploy fails in minutes, not in an hour.
      serviceTimeout: Duration.minutes(5),
    });
  }
}
