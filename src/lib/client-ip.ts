import { isIP } from 'node:net';

/** The 16 bytes of an IPv6 address (already known to be valid), dotted-quad tail included. */
function ipv6Bytes(ip: string): number[] {
  let text = ip;
  const tail = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  let quad: number[] = [];
  if (tail) {
    quad = tail.slice(1, 5).map(Number);
    text = `${text.slice(0, tail.index)}0:0`; // two placeholder groups, replaced below
  }
  const [head, rest = ''] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = text.includes('::') && rest ? rest.split(':') : [];
  const groups = text.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  const bytes = groups.flatMap((g) => {
    const n = parseInt(g || '0', 16);
    return [n >> 8, n & 0xff];
  });
  if (tail) bytes.splice(12, 4, ...quad);
  return bytes;
}

const zero = (bytes: number[], from: number, to: number) => bytes.slice(from, to).every((b) => b === 0);

/**
 * The IPv4 address an IPv6 address carries, when it is one of the forms that stand for an IPv4
 * client: IPv4-mapped (::ffff:a.b.c.d, in either notation), IPv4-compatible (::a.b.c.d, not ::
 * or ::1), NAT64's well-known prefix (64:ff9b::a.b.c.d, RFC 6052) and 6to4 (2002:aabb:ccdd::/48).
 */
function embeddedIPv4(b: number[]): string | null {
  const quad = (at: number) => b.slice(at, at + 4).join('.');
  if (zero(b, 0, 10) && b[10] === 0xff && b[11] === 0xff) return quad(12);
  if (zero(b, 0, 12) && b[12] !== 0) return quad(12);
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(b, 4, 12)) return quad(12);
  if (b[0] === 0x20 && b[1] === 0x02) return quad(2);
  return null;
}

/**
 * The unit a client is counted by: an IPv4 address as is; an IPv6 address by its /64 (one
 * subscriber's whole prefix, which it can rotate through at will), except the forms that carry
 * an IPv4 address, which count as that address — otherwise every NAT64 client on the internet
 * would share one /64, and one client could pose as a fresh /64 per request.
 */
export function clientNetwork(ip: string): string {
  const version = isIP(ip);
  if (version === 4) return ip;
  if (version !== 6) return 'invalid'; // never let an arbitrary string become a counter or row key
  const bytes = ipv6Bytes(ip.includes('%') ? ip.slice(0, ip.indexOf('%')) : ip);
  const v4 = embeddedIPv4(bytes);
  if (v4) return v4;
  const groups = [0, 2, 4, 6].map((i) => ((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return `${groups.join(':')}::/64`;
}
