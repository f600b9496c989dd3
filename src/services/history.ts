// Change history of a key: one row per create/update/delete, written with the change. Readable
// after the key is deleted.
import type { PrismaClient } from '../generated/prisma/client.js';
import { AppError } from '../lib/errors.js';
import { SNAPSHOT_FIELDS } from '../schemas/api-keys.js';
import { pageOf } from './paging.js';

export interface HistoryEntry {
  version: number;
  operation: string;
  changedAt: string;
  actor: { type: string; id: string | null; name: string | null };
  changeReason: string | null;
  snapshot: Record<string, unknown>;
}


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
      const { items, next, started } = await pageOf('history', opts, {
        signingKey: deps.cursorKey,
        fetch: (after, take) =>
          prisma.apiKeyChange.findMany({
            where: { apiKeyId: keyId, ...(after ? { version: { lt: after[1] } } : {}) },
            orderBy: { version: 'desc' },
            take,
          }),
        positionOf: (row) => [keyId, row.version],
        accept: (position) => position[0] === keyId, // another key's cursor is not a position here
      });
      if (!items.length && started) throw notFound();
      return { items: items.map(toEntry), next };
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
