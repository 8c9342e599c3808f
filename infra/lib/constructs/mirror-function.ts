/**
 * The function defaults, in one place: Node.js 24 (code built for 22 and up) on ARM64, esbuild bundling on this machine
 * (never Docker) into minified ESM with source maps, the deployment's config file bundled beside
 * the handler, a log group with bounded retention, X-Ray tracing, and the mirror bucket every
 * function works in (its name in the environment, and grants by prefix of the layout).
 */
import { Aws, Duration, RemovalPolicy, Size, Validations } from 'aws-cdk-lib';
import { type IRole, PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import { LogLevel, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { BucketGrants, type IBucket } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { CONFIG_FILE_NAME, ENV } from '../../../functions/config.ts';
import { type Deployment, secretsPrefix } from '../deployment.ts';
import { REPO_ROOT } from '../paths.ts';

export interface MirrorFunctionProps {
  /** Entry file under functions/entry/, without extension: `webhook`, `mirror`, … */
  readonly entry: string;
  readonly description: string;
  /** The config file is bundled beside the handler; its mirror name sets the secrets prefix. */
  readonly deployment: Deployment;
  /** The mirror bucket, imported by name. */
  readonly bucket: IBucket;
  /** Added to the bucket name and secrets prefix every function gets. */
  readonly environment?: Record<string, string>;
  /** @default 30 seconds */
  readonly timeout?: Duration;
  /** @default 512 MiB */
  readonly memorySize?: number;
  /** @default 512 MiB */
  readonly ephemeralStorageMiB?: number;
  /** @default a new role with only what its construct grants */
  readonly role?: IRole;
  /** @default none reserved */
  readonly reservedConcurrentExecutions?: number;
  /** @default one month */
  readonly logRetention?: RetentionDays;
}

/** Node's ESM output cannot `require` built-ins that bundled CommonJS dependencies still ask for. */
const REQUIRE_BANNER =
  "import { createRequire as __wmCreateRequire } from 'node:module'; const require = __wmCreateRequire(import.meta.url);";

export class MirrorFunction extends Construct {
  readonly fn: NodejsFunction;
  readonly logGroup: LogGroup;
  readonly role: IRole;
  private readonly bucket: IBucket;

  constructor(scope: Construct, id: string, props: MirrorFunctionProps) {
    super(scope, id);
    this.bucket = props.bucket;
    this.logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const { configPath, config } = props.deployment;
    // An own role without the AWSLambdaBasicExecutionRole managed policy: write to this log group only.
    this.role =
      props.role ??
      new Role(this, 'Role', {
        assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
        description: `Wasm Mirror ${props.entry} function`,
      });
    this.logGroup.grantWrite(this.role);
    this.fn = new NodejsFunction(this, 'Function', {
      entry: `${REPO_ROOT}/functions/entry/${props.entry}.ts`,
      handler: 'handler',
      description: props.description,
      runtime: Runtime.NODEJS_24_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySize ?? 512,
      ephemeralStorageSize: Size.mebibytes(props.ephemeralStorageMiB ?? 512),
      timeout: props.timeout ?? Duration.seconds(30),
      tracing: Tracing.ACTIVE,
      logGroup: this.logGroup,
      role: this.role,
      ...(props.reservedConcurrentExecutions !== undefined
        ? { reservedConcurrentExecutions: props.reservedConcurrentExecutions }
        : {}),
      projectRoot: REPO_ROOT,
      depsLockFilePath: `${REPO_ROOT}/package-lock.json`,
      environment: {
        NODE_OPTIONS: '--enable-source-maps',
        POWERTOOLS_SERVICE_NAME: 'wasm-mirror',
        POWERTOOLS_LOG_LEVEL: 'INFO',
        WASM_MIRROR_METRICS_NAMESPACE: 'WasmMirror',
        [ENV.bucketName]: props.bucket.bucketName,
        [ENV.secretsPrefix]: secretsPrefix(config),
        ...props.environment,
      },
      bundling: {
        forceDockerBundling: false,
        format: OutputFormat.ESM,
        target: 'node22',
        platform: 'node',
        mainFields: ['module', 'main'],
        minify: true,
        sourceMap: true,
        sourcesContent: false,
        // The SDK is bundled, not taken from the runtime, so the pinned versions are what runs.
        externalModules: [],
        banner: REQUIRE_BANNER,
        logLevel: LogLevel.ERROR,
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          afterBundling: (_input: string, output: string) => [
            `node -e "require('fs').copyFileSync(process.argv[1], process.argv[2])" "${configPath}" "${output}/${CONFIG_FILE_NAME}"`,
          ],
        },
      },
    });
    // ListBucket lets a HEAD of a missing key answer 404 rather than 403. A statement of its own:
    // the bucket's read grants add object reads, GetBucket* and List* on top.
    this.fn.addToRolePolicy(
      new PolicyStatement({ actions: ['s3:ListBucket'], resources: [props.bucket.bucketArn] }),
    );
    this.acknowledgeWildcard(
      'Resource::*',
      'X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level permissions.',
    );
  }

  /**
   * Exactly `actions` on the objects under each prefix of the layout: each function touches only
   * its part. A wildcard prefix needs `why`, which cdk-nag's acknowledgement of it records.
   */
  grantObjects(actions: string[], prefixes: string[], why?: string): void {
    for (const prefix of prefixes) {
      BucketGrants.fromBucket(this.bucket).actionsOnObjectKeys(this.fn, prefix, ...actions);
      if (!prefix.includes('*')) continue;
      if (why === undefined) throw new Error(`${this.node.path}: the grant on ${prefix} needs a reason`);
      this.acknowledgeWildcard(
        `Resource::${nagArn(`${this.bucket.bucketArn}/${prefix}`)}`,
        `${why}; ${PREFIX_REASON}`,
      );
    }
  }

  /**
   * Acknowledges cdk-nag's wildcard finding on this function's policy. The policy sits under the
   * role, which for an imported role is beside the import rather than under this construct.
   */
  acknowledgeWildcard(finding: string, reason: string): void {
    Validations.of(this.role).acknowledge({ id: `AwsSolutions-IAM5[${finding}]`, reason });
  }
}

const PREFIX_REASON =
  'objects are content-addressed or numbered under one prefix of the storage layout; the grant is limited to that prefix and to GetObject/PutObject.';

/** The form cdk-nag prints an ARN in, to acknowledge that exact finding. */
export function nagArn(arn: string): string {
  return arn
    .replace(Aws.PARTITION, '<AWS::Partition>')
    .replace(Aws.ACCOUNT_ID, '<AWS::AccountId>')
    .replace(Aws.REGION, '<AWS::Region>');
}
