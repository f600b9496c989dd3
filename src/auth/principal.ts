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
}
