// Where webhooks may go. Outbound requests from a server inside someone's network are the classic
// SSRF: a subscription pointing at 127.0.0.1, 10.x, 169.254.169.254 (cloud metadata) would make
// keyward probe what only it can reach. Every address a URL names or resolves to must be global
// unicast — checked when the subscription is saved and again, after DNS, on every attempt (the
// attempt connects to the address that was checked, so a name cannot change between the two).
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { addressMatcher } from '../lib/cidr.js';

/** Resolves a host name to every address it has (tests replace it). */
export type Resolver = (host: string) => Promise<string[]>;

export const systemResolver: Resolver = async (host) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

export interface OutboundPolicy {
  allowHttp: boolean;
  /** Blocks reachable although not global (WEBHOOK_ALLOWED_NETWORKS). */
  allowedNetworks: string[];
}

const GLOBAL_V6 = ipaddr.parseCIDR('2000::/3');

/** What kind of address `ip` is when it may not be reached (e.g. "a loopback address"), or null when it may. */
export function forbiddenKind(ip: string): string | null {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(ip);
  } catch {
    return 'not an IP address';
  }
  // ::ffff:127.0.0.1 is 127.0.0.1 to the kernel.
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) addr = (addr as ipaddr.IPv6).toIPv4Address();
  const range = addr.range();
  const names: Record<string, string> = {
    unspecified: 'an unspecified address',
    broadcast: 'a broadcast address',
    multicast: 'a multicast address',
    linkLocal: 'a link-local address (cloud metadata services live there)',
    loopback: 'a loopback address',
    carrierGradeNat: 'a shared (carrier-grade NAT) address',
    private: 'a private address',
    uniqueLocal: 'a private (unique local) address',
    reserved: 'a reserved address',
  };
  if (addr.kind() === 'ipv4') return range === 'unicast' ? null : (names[range] ?? `a special-purpose address (${range})`);
  // IPv6: global unicast only; 6to4, Teredo and NAT64 forms could carry any IPv4 address inside.
  if (range === 'unicast' && addr.match(GLOBAL_V6)) return null;
  return names[range] ?? `a special-purpose address (${range === 'unicast' ? 'outside 2000::/3' : range})`;
}

export interface UrlCheck {
  url: URL;
  /** The host as sockets see it: a name, or an IP literal without brackets. */
  host: string;
}

/** Why `text` cannot be a webhook URL (a phrase following "url"), checked without DNS; null when fine. */
export function urlProblem(text: string, policy: OutboundPolicy): string | null {
  return parseTarget(text, policy).problem;
}

function parseTarget(text: string, policy: OutboundPolicy): { problem: string; check?: undefined } | { problem: null; check: UrlCheck } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return { problem: 'must be an absolute URL, e.g. https://hooks.example.com/keyward' };
  }
  if (url.protocol !== 'https:' && !(policy.allowHttp && url.protocol === 'http:')) {
    return { problem: policy.allowHttp ? 'must be an http:// or https:// URL' : 'must be an https:// URL (plain http only with WEBHOOK_ALLOW_HTTP=true)' };
  }
  if (url.username || url.password) return { problem: 'must not carry a user name or password: the signature proves who sends' };
  if (url.hash) return { problem: 'must not have a #fragment (it is never sent)' };
  // The URL parser has already turned 2130706433, 0x7f.1 and 127.1 into 127.0.0.1.
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (isIP(host)) {
    const kind = isAllowed(host, policy) ? null : forbiddenKind(host);
    if (kind) return { problem: `names ${host}, ${kind}: webhooks may not reach loopback, private, link-local or metadata addresses (WEBHOOK_ALLOWED_NETWORKS can allow a block)` };
  } else if (host === 'localhost' || host.endsWith('.localhost')) {
    return { problem: `names ${host}, a loopback address: webhooks may not reach loopback, private, link-local or metadata addresses` };
  }
  return { problem: null, check: { url, host } };
}

const matchers = new WeakMap<string[], ReturnType<typeof addressMatcher>>();
function isAllowed(ip: string, policy: OutboundPolicy): boolean {
  if (!policy.allowedNetworks.length) return false;
  let m = matchers.get(policy.allowedNetworks);
  if (!m) matchers.set(policy.allowedNetworks, (m = addressMatcher(policy.allowedNetworks)));
  return m(ip);
}

export class ForbiddenTargetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForbiddenTargetError';
  }
}

/**
 * The addresses an attempt may connect to: the URL's own, or every one its name resolves to —
 * all of them must be allowed (a name with one private address among public ones is refused:
 * which one a client would pick is not ours to guess). Throws ForbiddenTargetError or the
 * resolver's error.
 */
export async function resolveTarget(text: string, policy: OutboundPolicy, resolve: Resolver): Promise<UrlCheck & { addresses: string[] }> {
  const parsed = parseTarget(text, policy);
  if (parsed.problem !== null) throw new ForbiddenTargetError(`url ${parsed.problem}`);
  const { host } = parsed.check;
  const addresses = isIP(host) ? [host] : await resolve(host);
  if (!addresses.length) throw new Error(`${host} has no address`);
  for (const ip of addresses) {
    const kind = isAllowed(ip, policy) ? null : forbiddenKind(ip);
    if (kind) throw new ForbiddenTargetError(`${host} resolves to ${ip}, ${kind}: webhooks may not reach it`);
  }
  return { ...parsed.check, addresses };
}
