/**
 * What the embedded server's `/status` says about each webhook source, for the status page: its
 * allow-list, whether its secret is set (never the secret), and the authentication failures and
 * rate-limit refusals of the last hour. Counted per minute in a fixed ring per configured source,
 * so a flood of refused deliveries costs no memory.
 */
import type { SecretSource } from '../core/ports.ts';
import { senders } from '../core/sources/registry.ts';
import type { SourceConfig } from '../core/sources/types.ts';

export const RECENT_WINDOW_MINUTES = 60;

export interface SourceHealth {
  repositories: string[];
  rateLimitPerMinute: number;
  /** Senders of this type put the secret in the URL: `/hooks/<id>/<secret>`. */
  webhookTokenInPath: boolean;
  /** The secret's name and whether it has a value; deliveries are refused while it has none. */
  webhookSecret: { name: string | null; set: boolean };
  recent: {
    windowMinutes: number;
    authFailures: number;
    lastAuthFailureAt: string | null;
    rateLimited: number;
    lastRateLimitedAt: string | null;
  };
}

class MinuteCounts {
  readonly #minutes = new Array<number>(RECENT_WINDOW_MINUTES).fill(-1);
  readonly #counts = new Array<number>(RECENT_WINDOW_MINUTES).fill(0);
  last: number | undefined;

  add(at: number): void {
    const minute = Math.floor(at / 60_000);
    const slot = minute % RECENT_WINDOW_MINUTES;
    if (this.#minutes[slot] !== minute) {
      this.#minutes[slot] = minute;
      this.#counts[slot] = 0;
    }
    this.#counts[slot]!++;
    this.last = at;
  }

  total(now: number): number {
    const current = Math.floor(now / 60_000);
    let sum = 0;
    for (let i = 0; i < RECENT_WINDOW_MINUTES; i++) {
      if (current - this.#minutes[i]! < RECENT_WINDOW_MINUTES) sum += this.#counts[i]!;
    }
    return sum;
  }
}

/** Refused deliveries per configured source: 401s (authentication) and 429s (rate limit). */
export class WebhookActivity {
  readonly #bySource = new Map<string, { auth: MinuteCounts; rate: MinuteCounts }>();

  constructor(
    sourceIds: readonly string[],
    private readonly now: () => number = Date.now,
  ) {
    for (const id of sourceIds)
      this.#bySource.set(id, { auth: new MinuteCounts(), rate: new MinuteCounts() });
  }

  /** Notes the status a delivery (or its head) was answered with. */
  record(sourceId: string, status: number): void {
    const counts = this.#bySource.get(sourceId);
    if (counts === undefined) return;
    if (status === 401) counts.auth.add(this.now());
    else if (status === 429) counts.rate.add(this.now());
  }

  recent(sourceId: string): SourceHealth['recent'] {
    const counts = this.#bySource.get(sourceId);
    const now = this.now();
    const iso = (t: number | undefined) =>
      t === undefined || now - t >= RECENT_WINDOW_MINUTES * 60_000 ? null : new Date(t).toISOString();
    return {
      windowMinutes: RECENT_WINDOW_MINUTES,
      authFailures: counts?.auth.total(now) ?? 0,
      lastAuthFailureAt: iso(counts?.auth.last),
      rateLimited: counts?.rate.total(now) ?? 0,
      lastRateLimitedAt: iso(counts?.rate.last),
    };
  }
}

export async function sourceHealth(
  source: SourceConfig,
  secrets: SecretSource,
  activity: WebhookActivity,
): Promise<SourceHealth> {
  let set = false;
  if (source.webhookSecretEnv !== undefined) {
    try {
      const value = await secrets.get(source.webhookSecretEnv);
      set = value !== undefined && value !== '';
    } catch {
      set = false;
    }
  }
  return {
    repositories: [...source.repositories],
    rateLimitPerMinute: source.rateLimitPerMinute,
    webhookTokenInPath: senders[source.type].auth.kind === 'path-token',
    webhookSecret: { name: source.webhookSecretEnv ?? null, set },
    recent: activity.recent(source.id),
  };
}
