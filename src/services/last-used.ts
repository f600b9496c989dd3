// lastUsedAt / lastUsedFromIp, off the request path: at most one write per key per 30 s,
// batched, flushed on an interval and at shutdown. The conditional UPDATE keeps it correct when
// many instances write, and never touches updatedAt or the row version.
import type { FastifyBaseLogger } from 'fastify';
import type { KeyStore } from '../store/api-keys.js';

export const LAST_USED_THROTTLE_MS = 30_000;

export function createLastUsedRecorder(deps: {
  keys: Pick<KeyStore, 'recordUses'>;
  log: FastifyBaseLogger;
  flushEveryMs: number;
  now?: () => Date;
}) {
  const { log } = deps;
  const now = deps.now ?? (() => new Date());
  const recorded = new Map<string, number>(); // key id → when we last queued a write for it
  let pending = new Map<string, { at: Date; ip: string }>();
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> = Promise.resolve();
  let queued: Promise<void> | null = null;

  async function writeBatch(batch: Map<string, { at: Date; ip: string }>) {
    if (!batch.size) return;
    await deps.keys.recordUses([...batch].map(([id, v]) => ({ id, ...v })), LAST_USED_THROTTLE_MS);
  }

  /**
   * One write at a time, its batch taken when it starts: a slow or hung database holds at most
   * that batch and the pending map, each at most one entry per key that authenticated (entries
   * exist only for keys that verified, so no caller can inflate them). A failed batch goes back
   * under newer entries. The UPDATE is idempotent, so a write that lands late does no harm.
   */
  function flush(): Promise<void> {
    const cutoff = now().getTime() - LAST_USED_THROTTLE_MS;
    for (const [id, at] of recorded) if (at < cutoff) recorded.delete(id);
    queued ??= writing.then(async () => {
      queued = null;
      const batch = pending;
      pending = new Map();
      try {
        await writeBatch(batch);
      } catch (err) {
        log.warn({ err: { message: (err as Error).message }, keys: batch.size }, 'could not record lastUsedAt; will retry');
        for (const [id, v] of batch) if (!pending.has(id)) pending.set(id, v);
      }
    });
    writing = queued;
    return queued;
  }

  return {
    /** `ip` may be a function: it is called only when this use is recorded. */
    touch(id: string, ip: string | (() => string)) {
      const last = recorded.get(id);
      const t = deps.now ? deps.now().getTime() : Date.now();
      if (last !== undefined && t - last < LAST_USED_THROTTLE_MS) return; // the hot path: no allocation
      recorded.set(id, t);
      pending.set(id, { at: new Date(t), ip: typeof ip === 'function' ? ip() : ip });
    },
    flush,
    /** Keys waiting for their write (not counting the batch being written). */
    get pending() {
      return pending.size;
    },
    start() {
      timer ??= setInterval(() => void flush(), deps.flushEveryMs);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await flush();
    },
  };
}

export type LastUsedRecorder = ReturnType<typeof createLastUsedRecorder>;
