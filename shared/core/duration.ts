/**
 * Durations, one grammar everywhere (config keys and command-line flags): a sequence of
 * `<number><unit>` with units ms, s, m, h, d, e.g. `500ms`, `30s`, `1h30m`, `1.5h`, `2d`.
 * A JavaScript number (JSON/YAML config) is milliseconds; a bare number in text takes
 * `bareUnit` when the caller allows one (flags such as `--interval 30` mean seconds).
 */

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
export type DurationUnit = keyof typeof UNIT_MS;

const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
const BARE = /^\d+(?:\.\d+)?$/;

/** Milliseconds (rounded), or undefined unless the text is a positive duration. */
export function parseDuration(
  value: string | number,
  options: { bareUnit?: DurationUnit } = {},
): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  const text = value.trim();
  if (text === '') return undefined;
  let total = 0;
  if (BARE.test(text)) {
    if (options.bareUnit === undefined) return undefined;
    total = Number(text) * UNIT_MS[options.bareUnit];
  } else {
    let pos = 0;
    while (pos < text.length) {
      PART.lastIndex = pos;
      const match = PART.exec(text);
      if (match === null) return undefined;
      total += Number(match[1]) * UNIT_MS[match[2] as DurationUnit];
      pos = PART.lastIndex;
    }
  }
  const ms = Math.round(total);
  return ms > 0 && Number.isSafeInteger(ms) ? ms : undefined;
}

/** `1h30m`, `45s`, `250ms`: the shortest text parseDuration reads back as the same value. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  let rest = ms;
  let out = '';
  for (const unit of ['d', 'h', 'm', 's', 'ms'] as const) {
    const n = Math.floor(rest / UNIT_MS[unit]);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * UNIT_MS[unit];
  }
  return out;
}
