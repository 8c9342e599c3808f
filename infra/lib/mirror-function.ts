/**
 * The function defaults, in one place: Node.js 24 (code built for 22 and up) on ARM64, esbuild bundling on this machine
 * (never Docker) into minified ESM with source maps, the deployment's config file bundled beside
 * the handler, a log group with bounded retention, and X-Ray tracing.
 */
import { Duration, RemovalPolicy, Size } from 'aws-cdk-lib';
import { type IRole, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import { LogLevel, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { CONFIG_FILE_NAME } from '../../functions/config.ts';
import { REPO_ROOT } from './paths.ts';

export interface MirrorFunctionProps {
  /** Entry file under functions/entry/, without extension: `webhook`, `mirror`, … */
  readonly entry: string;
  readonly description: string;
  /** Absolute path of the deployment's config file. */
  readonly configPath: string;
  readonly environment?: Record<string, string>;
  /** @default 30 seconds */
  readonly timeout?: Duration;
  /** @default 512 MiB */
  readonly memorySize?: number;
  /** @default 512 MiB */
  readonly ephemeralStorageMiB?: number;
  /** @default a new role with only what the stack grants */
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

  constructor(scope: Construct, id: string, props: MirrorFunctionProps) {
    super(scope, id);
    this.logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const configPath = props.configPath;
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
  }
}
