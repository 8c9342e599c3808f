/** Small DOM and formatting helpers for the status page. */

type Props<K extends keyof HTMLElementTagNameMap> = Partial<Omit<HTMLElementTagNameMap[K], 'style'>>;

/** An element with properties set and children appended (strings become text nodes, never markup). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props<K>,
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = Object.assign(document.createElement(tag), props);
  if (children.length > 0) node.append(...children);
  return node;
}

/** Says something to screen readers through the page's polite live region. */
export function announce(text: string): void {
  const region = document.getElementById('announcer');
  if (region !== null) region.textContent = text;
}

/** The Clipboard API where the page may use it (HTTPS, localhost), else a selected textarea. */
export async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = el('textarea', { value: text, readOnly: true, className: 'visually-hidden' });
    document.body.append(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    area.remove();
    return ok;
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** `2026-01-10 12:00 UTC`: one zone for everyone reading the same page. */
export function formatTime(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

export function relativeTime(iso: string, now: Date): string {
  const ms = Date.parse(iso) - now.getTime();
  const abs = Math.abs(ms);
  const [value, unit] =
    abs < 90_000
      ? [Math.round(abs / 1000), 's']
      : abs < 90 * 60_000
        ? [Math.round(abs / 60_000), 'min']
        : abs < 48 * 3600_000
          ? [Math.round(abs / 3600_000), 'h']
          : [Math.round(abs / 86_400_000), 'days'];
  return ms >= 0 ? `in ${value} ${unit}` : `${value} ${unit} ago`;
}
