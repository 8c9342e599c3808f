/**
 * The core's Logger and Metrics ports on Powertools: structured JSON logs with the Lambda context,
 * and CloudWatch EMF metrics flushed by the `logMetrics` middleware at the end of each invocation.
 */
import type { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import { MetricUnit, type Metrics as PowertoolsMetrics } from '@aws-lambda-powertools/metrics';
import type { Fields, Labels, Logger, Metrics } from '../../shared/core/ports.ts';

type Unit = (typeof MetricUnit)[keyof typeof MetricUnit];

export function powertoolsLogger(logger: PowertoolsLogger): Logger {
  return {
    debug: (message: string, fields?: Fields) => logger.debug(message, fields ?? {}),
    info: (message: string, fields?: Fields) => logger.info(message, fields ?? {}),
    warn: (message: string, fields?: Fields) => logger.warn(message, fields ?? {}),
    error: (message: string, fields?: Fields) => logger.error(message, errorFields(fields)),
  } satisfies Logger;
}

/** Powertools formats an `error` field with name, message and stack; keep it an Error. */
function errorFields(fields: Fields | undefined): Fields {
  if (!fields) return {};
  const { err, ...rest } = fields;
  return err instanceof Error ? { ...rest, error: err } : fields;
}

export function powertoolsMetrics(metrics: PowertoolsMetrics): Metrics {
  return {
    count(name: string, labels?: Labels, value = 1) {
      emit(metrics, name, MetricUnit.Count, value, labels);
    },
    gauge(name: string, value: number, labels?: Labels) {
      emit(metrics, name, unitFor(name), value, labels);
    },
  } satisfies Metrics;
}

function emit(metrics: PowertoolsMetrics, name: string, unit: Unit, value: number, labels?: Labels) {
  if (!labels || Object.keys(labels).length === 0) {
    metrics.addMetric(name, unit, value);
    return;
  }
  // Labels become dimensions of a metric of their own, so they never leak onto the others in
  // the same invocation's EMF blob.
  const single = metrics.singleMetric();
  single.addDimensions(labels);
  single.addMetric(name, unit, value);
}

function unitFor(name: string): Unit {
  if (name.endsWith('_seconds')) return MetricUnit.Seconds;
  if (name.endsWith('_bytes')) return MetricUnit.Bytes;
  if (name.endsWith('_ms') || name.endsWith('_milliseconds')) return MetricUnit.Milliseconds;
  return MetricUnit.Count;
}
