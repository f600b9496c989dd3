import { randomBytes } from 'node:crypto';
import type { PrismaClient } from '../generated/prisma/client.js';

/**
 * The key that signs paging cursors, shared by every instance through the database and made on
 * first use (so a cursor issued by one instance works on another).
 */
export function createCursorKeyLoader(prisma: PrismaClient): () => Promise<Buffer> {
  let loading: Promise<Buffer> | undefined;
  return () => {
    loading ??= (async () => {
      await prisma.appSetting.createMany({
        data: [{ name: 'cursor_key', value: randomBytes(32).toString('base64') }],
        skipDuplicates: true,
      });
      const row = await prisma.appSetting.findUniqueOrThrow({ where: { name: 'cursor_key' } });
      return Buffer.from(row.value, 'base64');
    })().catch((err) => {
      loading = undefined; // try again next time
      throw err;
    });
    return loading;
  };
}
