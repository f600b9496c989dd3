// Address allowlists: parsing CIDR blocks strictly and matching client addresses against them,
// with ipaddr.js (what fastify's proxy-addr already uses), never hand-written bit arithmetic.
import ipaddr from 'ipaddr.js';

export const MAX_ALLOWED_CIDRS = 100;

type Block = [ipaddr.IPv4 | ipaddr.IPv6, number];

/**
 * Why `text` is not a canonical CIDR block (a phrase that follows the field's name), or null when
 * it is one. Canonical: an IPv4 block in four decimal parts without leading zeros, an IPv6 block
 * in RFC 5952 form (lowercase, zeros compressed), an explicit prefix length, and no host bits
 * set — `10.0.0.1/8` is refused with the block it probably meant, never silently widened.
 */
export function cidrProblem(text: string): string | null {
  const slash = text.indexOf('/');
  if (slash < 0) return `must be a CIDR block with a prefix length, e.g. ${/:/.test(text) ? `${text}/128` : `${text || '203.0.113.7'}/32`}`;
  const address = text.slice(0, slash);
  const bits = text.slice(slash + 1);
  if (!/^(0|[1-9]\d{0,2})$/.test(bits)) return 'must end in a prefix length of whole decimal digits, e.g. /24';
  if (address.includes('%')) return 'must not carry an IPv6 zone (%…): zones mean nothing off the host';
  let block: Block;
  try {
    block = ipaddr.parseCIDR(text);
  } catch {
    return 'must be an IPv4 or IPv6 CIDR block, e.g. 10.0.0.0/8 or 2001:db8::/32';
  }
  const [addr, length] = block;
  if (addr.kind() === 'ipv4') {
    if (!ipaddr.IPv4.isValidFourPartDecimal(address) || addr.toString() !== address) {
      return 'must write the IPv4 address as four decimal numbers from 0 to 255 without leading zeros, e.g. 10.0.0.0/8';
    }
  } else {
    const v6 = addr as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) return 'must write an IPv4-mapped block as IPv4 (clients are matched as IPv4 whichever way they connect)';
    if (v6.toRFC5952String() !== address) return `must be in canonical form (lowercase, zeros compressed): ${v6.toRFC5952String()}/${length}`;
  }
  const network = (addr.kind() === 'ipv4' ? ipaddr.IPv4 : ipaddr.IPv6).networkAddressFromCIDR(text);
  const networkText = network.kind() === 'ipv6' ? (network as ipaddr.IPv6).toRFC5952String() : network.toString();
  if (networkText !== address) {
    const one = addr.kind() === 'ipv4' ? 32 : 128;
    return `has host bits set (${text}): send ${networkText}/${length} for the whole block, or ${address}/${one} for that one address`;
  }
  return null;
}

/** A client address as the allowlist sees it: IPv4-mapped IPv6 (::ffff:10.0.0.1) is the IPv4 address. */
function parseClient(ip: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  try {
    return ipaddr.process(ip);
  } catch {
    return null;
  }
}

/** Whether addresses may use a key: built once per cached key from its canonical blocks. */
export type AddressMatcher = (ip: string | null | undefined) => boolean;

export function addressMatcher(blocks: readonly string[]): AddressMatcher {
  // keyward stores canonical blocks only; one written behind its back that does not parse
  // matches nothing (fail closed), rather than failing every request of the key.
  const parsed: Block[] = [];
  for (const b of blocks) {
    try {
      parsed.push(ipaddr.parseCIDR(b));
    } catch {
      // skipped
    }
  }
  // The last address judged: a key's requests mostly come from the same few clients, and a
  // parse per request would cost more than the rest of a cache hit.
  let lastIp: string | undefined;
  let lastAllowed = false;
  return (ip) => {
    if (!ip) return false;
    if (ip === lastIp) return lastAllowed;
    const client = parseClient(ip);
    let allowed = false;
    if (client) {
      const kind = client.kind();
      for (const [range, bits] of parsed) {
        if (range.kind() === kind && client.match(range, bits)) {
          allowed = true;
          break;
        }
      }
    }
    lastIp = ip;
    lastAllowed = allowed;
    return allowed;
  };
}
