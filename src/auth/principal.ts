import type { AddressMatcher } from '../lib/cidr.js';

// Who a request is: the verified key as the rest of the server sees it (kept in the cache).
export interface Principal {
  id: string;
  name: string;
  keyPrefix: string;
  roles: Array<{ id: number; name: string }>;
  permissions: Set<string>;
  /** `permissions` sorted, computed once per cache fill rather than per request. */
  permissionList: string[];
  isInfrastructureKey: boolean;
  /** When the key expires (ms), or null: the escalation guard keeps what it creates within it. */
  expiresAt: number | null;
  /** The owner's own data, as verify returns it. */
  metadata: Record<string, unknown>;
  /** The CIDR blocks the key may be used from (canonical), or null for any address. */
  allowedCidrs: string[] | null;
  /** Whether an address is inside allowedCidrs; null when any address may use the key. */
  allowsAddress: AddressMatcher | null;
  /** The key's own request limit, or null for the server's default. */
  rateLimit: { limit: number; windowSeconds: number } | null;
  /** When the presented secret stops working (ms): a rotation's replaced secret, in its grace period. Null for the key's own secret. */
  secretExpiresAt: number | null;
}
