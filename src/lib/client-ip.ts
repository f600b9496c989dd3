import { isIP, isIPv6 } from 'node:net';

/**
 * The unit a client is counted by: an IPv4 address as is, an IPv6 address by its /64 (one
 * subscriber's whole prefix, which it can rotate through at will). IPv4-mapped IPv6 is IPv4.
 */
export function clientNetwork(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1];
  if (!isIP(ip)) return 'invalid'; // never let an arbitrary string become a counter or row key
  if (!isIPv6(ip)) return ip;
  const [head, tail = ''] = ip.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g || '0', 16).toString(16))
    .join(':')}::/64`;
}
