/**
 * The one middy stack every entry point wears: Powertools Logger (Lambda context on each line),
 * Tracer (a segment per invocation) and Metrics (EMF flushed at the end, cold starts counted).
 */
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import type { Powertools } from '../runtime.ts';

export function withPowertools<E, R>(
  handler: (event: E, context: Context) => Promise<R>,
  powertools: Powertools,
): middy.MiddyfiedHandler<E, R, Error, Context> {
  return middy<E, R, Error, Context>(handler)
    .use(captureLambdaHandler(powertools.tracer, { captureResponse: false }))
    .use(injectLambdaContext(powertools.logger, { resetKeys: true }))
    .use(logMetrics(powertools.metrics, { captureColdStartMetric: true }));
}
