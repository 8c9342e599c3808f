/**
 * The status page as a static object: index.html at the bucket root, which CloudFront serves at
 * `/`. The document is built at synth time and travels in the template, so a deploy writes the
 * page of the code it deploys, and only when the page changed. An SDK call rather than a
 * BucketDeployment: its function may put this one key and nothing else, where a
 * BucketDeployment's may read, overwrite and delete the whole bucket.
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
import { STATUS_PAGE_KEY } from '../storage-stack.ts';

export interface StatusPageProps {
  readonly bucket: IBucket;
  /** The whole document, from `statusPageHtml()` (shared/status-page/page.ts). */
  readonly html: string;
}

/** Browsers and CloudFront both keep the page five minutes, as the KeysCache policy does. */
export const STATUS_PAGE_CACHE_CONTROL = 'public, max-age=300';

export class StatusPage extends Construct {
  readonly role: Role;
  readonly logGroup: LogGroup;

  constructor(scope: Construct, id: string, props: StatusPageProps) {
    super(scope, id);
    this.logGroup = new LogGroup(this, 'Logs', {
      retention: RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // An own role without the AWSLambdaBasicExecutionRole managed policy: this log group only.
    this.role = new Role(this, 'Role', {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
      description: 'Wasm Mirror status page writer',
    });
    this.logGroup.grantWrite(this.role);

    const put: AwsSdkCall = {
      service: 'S3',
      action: 'PutObject',
      parameters: {
        Bucket: props.bucket.bucketName,
        Key: STATUS_PAGE_KEY,
        Body: props.html,
        ContentType: 'text/html; charset=utf-8',
        CacheControl: STATUS_PAGE_CACHE_CONTROL,
      },
      physicalResourceId: PhysicalResourceId.of(`${props.bucket.bucketName}/${STATUS_PAGE_KEY}`),
      // The request carries the whole page; the logs need not.
      logging: Logging.withDataHidden(),
      outputPaths: ['ETag'],
    };
    new AwsCustomResource(this, 'Object', {
      resourceType: 'Custom::WasmMirrorStatusPage',
      // No onDelete: like keys.json, the page stays with the retained bucket.
      onCreate: put,
      onUpdate: put,
      policy: AwsCustomResourcePolicy.fromStatements([
        new PolicyStatement({
          actions: ['s3:PutObject'],
          resources: [props.bucket.arnForObjects(STATUS_PAGE_KEY)],
        }),
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
