// TRUST_PROXY is checked, not just parsed: a list that trusts every address of a family lets
// any client choose its own address through X-Forwarded-For (that is "trust everyone" by
// another name: 0.0.0.0/1,128.0.0.0/1), and a value the proxy library rejects would crash the
// start instead of being reported.
import proxyAddr from '@fastify/proxy-addr';
import { isIP } from 'node:net';

type Range = { family: 4 | 6; start: bigint; end: bigint };

function ipv4ToBigInt(ip: string): bigint {
  return ip.split('.').reduce((n, part) => (n << 8n) | BigInt(Number(part)), 0n);
}

function ipv6ToBigInt(ip: string): bigint {
  let text = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const n = ipv4ToBigInt(v4[1]);
    text = `${text.slice(0, -v4[1].length)}${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = text.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return groups.reduce((n, g) => (n << 16n) | BigInt(parseInt(g || '0', 16)), 0n);
}

const V4_MAPPED = { start: 0xffff00000000n, end: 0xffffffffffffn }; // ::ffff:0:0/96

/** The addresses an entry covers; an IPv4-mapped IPv6 range covers those IPv4 addresses too. */
function rangesOf(entry: string): Range[] {
  const [addr, bitsText] = entry.split('/');
  const family = isIP(addr) as 4 | 6;
  const width = family === 4 ? 32n : 128n;
  const bits = bitsText === undefined ? width : BigInt(Number(bitsText));
  const value = family === 4 ? ipv4ToBigInt(addr) : ipv6ToBigInt(addr);
  const size = 1n << (width - bits);
  const start = value & ~(size - 1n) & ((1n << width) - 1n);
  const ranges: Range[] = [{ family, start, end: start + size - 1n }];
  if (family === 6) {
    const lo = start > V4_MAPPED.start ? start : V4_MAPPED.start;
    const hi = start + size - 1n < V4_MAPPED.end ? start + size - 1n : V4_MAPPED.end;
    if (lo <= hi) ranges.push({ family: 4, start: lo - V4_MAPPED.start, end: hi - V4_MAPPED.start });
  }
  return ranges;
}

function coversFamily(ranges: Range[], family: 4 | 6): boolean {
  const max = family === 4 ? (1n << 32n) - 1n : (1n << 128n) - 1n;
  const sorted = ranges.filter((r) => r.family === family).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  let next = 0n; // the first address not yet covered
  for (const r of sorted) {
    if (r.start > next) return false;
    if (r.end + 1n > next) next = r.end + 1n;
    if (next > max) return true;
  }
  return false;
}

/** Why `entries` (addresses/CIDRs, already well-formed) cannot be trusted, or null when they can. */
export function trustProxyProblem(entries: string[]): string | null {
  const ranges = entries.flatMap(rangesOf);
  for (const family of [6, 4] as const) {
    if (coversFamily(ranges, family)) {
      return `trusts every IPv${family} address, so any client could choose its own address; list only your proxies' addresses or CIDRs`;
    }
  }
  // No proxy network is that wide: such a prefix trusts a good part of the internet.
  const widest = { 4: 8, 6: 16 } as const;
  for (const entry of entries) {
    const [addr, bits] = entry.split('/');
    const family = isIP(addr) as 4 | 6;
    if (bits !== undefined && Number(bits) < widest[family]) {
      return `contains ${entry}, wider than any network of proxies (the widest accepted is /${widest[family]} for IPv${family})`;
    }
  }
  for (const entry of entries) {
    try {
      proxyAddr.compile([entry]);
    } catch {
      return `contains ${entry}, which is not an address or CIDR the proxy check accepts`;
    }
  }
  return null;
}
