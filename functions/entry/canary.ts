import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { createCanaryCheck, loadCanaryEnv } from '../handlers/canary.ts';
import { withPowertools } from '../handlers/middleware.ts';

// Only what the canary uses: Powertools and fetch; no AWS clients, no config file.
const env = loadCanaryEnv(process.env);
const logger = new Logger({ serviceName: env.serviceName, logLevel: env.logLevel });
const powertools = {
  logger,
  metrics: new Metrics({
    namespace: env.metricsNamespace,
    serviceName: env.serviceName,
    // The dimensions of the other functions' metrics, so one mirror's series line up.
    defaultDimensions: { mirror: env.mirrorName },
    // Its warnings become log lines at the function's level.
    logger,
  }),
  tracer: new Tracer({ serviceName: env.serviceName }),
};

export const handler = withPowertools(createCanaryCheck(env, powertools), powertools);
