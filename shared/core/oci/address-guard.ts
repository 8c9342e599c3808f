/**
 * Refuses URLs that point at link-local or cloud metadata addresses, so a hostile registry cannot
 * steer a token request or a redirect to 169.254.169.254 and read instance credentials. Loopback
 * and private ranges stay allowed: operators run registries there.
 */
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { WasmMirrorError } from '../errors.ts';

/** Throws FORBIDDEN_ADDRESS (before any connection is made) when `url` must not be contacted. */
export type AddressGuard = (url: URL) => Promise<void>;

const forbidden = new BlockList();
forbidden.addSubnet('169.254.0.0', 16, 'ipv4'); // link-local, AWS/GCP/Azure/OpenStack metadata
forbidden.addSubnet('0.0.0.0', 8, 'ipv4'); // "this network": reaches the local host on Linux
forbidden.addAddress('100.100.100.200', 'ipv4'); // Alibaba Cloud metadata
forbidden.addSubnet('fe80::', 10, 'ipv6'); // link-local
forbidden.addAddress('fd00:ec2::254', 'ipv6'); // AWS metadata over IPv6
forbidden.addAddress('::', 'ipv6');

/** True when the IP literal (v4 or v6, brackets allowed) is link-local or a metadata address. */
export function isForbiddenAddress(address: string): boolean {
  const ip = address.replace(/^\[|\]$/g, '');
  const family = isIP(ip);
  if (family === 4) return forbidden.check(ip, 'ipv4');
  if (family !== 6) return false;
  const v4 = embeddedIpv4(ip);
  if (v4 !== undefined && forbidden.check(v4, 'ipv4')) return true;
  return forbidden.check(ip, 'ipv6');
}

const dottedQuad = (hi: number, lo: number) => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;

/**
 * The IPv4 address inside an IPv6 address that translates to it: IPv4-mapped (::ffff:a.b.c.d),
 * IPv4-compatible, NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4 (2002:aabb:ccdd::/16).
 */
function embeddedIpv4(ip: string): string | undefined {
  const groups = expandIpv6(ip);
  if (groups === undefined) return undefined;
  if (groups[0] === 0x64 && groups[1] === 0xff9b) return dottedQuad(groups[6] ?? 0, groups[7] ?? 0);
  if (groups[0] === 0x2002) return dottedQuad(groups[1] ?? 0, groups[2] ?? 0);
  const head = groups.slice(0, 5).every((g) => g === 0);
  if (!head || (groups[5] !== 0xffff && groups[5] !== 0)) return undefined;
  const hi = groups[6] ?? 0;
  const lo = groups[7] ?? 0;
  if (groups[5] === 0 && hi === 0) return undefined; // ::, ::1
  return dottedQuad(hi, lo);
}

function expandIpv6(ip: string): number[] | undefined {
  let text = ip.toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted?.[1] !== undefined) {
    const parts = dotted[1].split('.').map(Number);
    const [a = 0, b = 0, c = 0, d = 0] = parts;
    text = `${text.slice(0, -dotted[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [left = '', right] = text.split('::');
  const l = left === '' ? [] : left.split(':');
  const r = right === undefined || right === '' ? [] : right.split(':');
  const fill = right === undefined ? 0 : 8 - l.length - r.length;
  const groups = [...l, ...Array<string>(Math.max(0, fill)).fill('0'), ...r].map((g) =>
    Number.parseInt(g, 16),
  );
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff)
    ? groups
    : undefined;
}

/**
 * Checks IP literals directly and host names by resolving every address they map to. fetch
 * resolves the name again when it connects, so a name that changes its answer in between (DNS
 * rebinding) is not caught here; a connect-time lookup hook in the HTTP agent would close that.
 */
export const defaultAddressGuard: AddressGuard = async (url) => {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const refuse = (address: string) =>
    new WasmMirrorError(
      'FORBIDDEN_ADDRESS',
      `refusing to contact ${url.host}: ${address} is a link-local or metadata address`,
    );
  if (isIP(host) !== 0) {
    if (isForbiddenAddress(host)) throw refuse(host);
    return;
  }
  let addresses: { address: string }[];
  try {
    addresses = await lookup(host, { all: true, verbatim: true });
  } catch (err) {
    throw new WasmMirrorError('REGISTRY_UNAVAILABLE', `cannot resolve ${host}`, {
      cause: err,
      retryable: true,
    });
  }
  for (const a of addresses) if (isForbiddenAddress(a.address)) throw refuse(a.address);
};
