// Change history of a key: one row per create/update/delete, written with the change. Readable
// after the key is deleted.
import { z } from 'zod';
import type { PrismaClient } from '../generated/prisma/client.js';
import { AppError } from '../lib/errors.js';
import { invalidCursor, signCursor, verifyCursor } from './paging.js';
import { UNPAGED_CAP } from './api-keys.js';

export interface HistoryEntry {
  version: number;
  operation: string;
  changedAt: string;
  actor: { type: string; id: string | null; name: string | null };
  changeReason: string | null;
  snapshot: Record<string, unknown>;
}

const historyCursor = z.tuple([z.literal(2), z.guid(), z.number().int().positive()]);

/** The fields a snapshot holds, in the order a comparison lists them. */
export const SNAPSHOT_FIELDS = ['name', 'description', 'keyPrefix', 'roles', 'isEnabled', 'isInfrastructureKey', 'expiresAt'] as const;

type Row = {
  version: number;
  operation: string;
  changedAt: Date;
  actorType: string;
  actorId: string | null;
  actorName: string | null;
  changeReason: string | null;
  snapshot: unknown;
};

const toEntry = (r: Row): HistoryEntry => ({
  version: r.version,
  operation: r.operation,
  changedAt: r.changedAt.toISOString(),
  actor: { type: r.actorType, id: r.actorId, name: r.actorName },
  changeReason: r.changeReason,
  snapshot: r.snapshot as Record<string, unknown>,
});

export function createHistoryService(deps: { prisma: PrismaClient; cursorKey: () => Promise<Buffer> }) {
  const { prisma } = deps;
  const notFound = () => new AppError('API_KEY_NOT_FOUND', 'No change history for this key.');

  async function one(keyId: string, version: number): Promise<HistoryEntry> {
    const row = await prisma.apiKeyChange.findUnique({ where: { apiKeyId_version: { apiKeyId: keyId, version } } });
    if (!row) throw new AppError('VERSION_NOT_FOUND', `The key has no version ${version}.`);
    return toEntry(row);
  }

  return {
    /** Newest first; without `limit` every entry (up to the list cap), as the key list does. */
    async list(keyId: string, opts: { limit?: number; cursor?: string }) {
      const key = opts.cursor !== undefined || opts.limit !== undefined ? await deps.cursorKey() : null;
      let before: number | undefined;
      if (opts.cursor !== undefined) {
        const parsed = historyCursor.safeParse(verifyCursor(opts.cursor, key!));
        if (!parsed.success || parsed.data[1] !== keyId) throw invalidCursor();
        before = parsed.data[2];
      }
      const limit = opts.limit ?? UNPAGED_CAP;
      const rows = await prisma.apiKeyChange.findMany({
        where: { apiKeyId: keyId, ...(before !== undefined ? { version: { lt: before } } : {}) },
        orderBy: { version: 'desc' },
        take: limit + 1,
      });
      if (!rows.length && before === undefined) throw notFound();
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      const next = rows.length > limit && key && last ? signCursor([2, keyId, last.version], key) : null;
      return { items: page.map(toEntry), next };
    },

    get: one,

    async compare(keyId: string, fromVersion: number, toVersion: number) {
      const [from, to] = await Promise.all([one(keyId, fromVersion), one(keyId, toVersion)]);
      const changes = SNAPSHOT_FIELDS.filter((f) => JSON.stringify(from.snapshot[f] ?? null) !== JSON.stringify(to.snapshot[f] ?? null)).map(
        (field) => ({ field, from: from.snapshot[field] ?? null, to: to.snapshot[field] ?? null }),
      );
      return { fromVersion, toVersion, changes };
    },
  };
}

export type HistoryService = ReturnType<typeof createHistoryService>;
