// Whether the database answers: the health route's one question, with a deadline of its own (a
// database that accepts connections but never answers must not hang the check).
import type { PrismaClient } from '../generated/prisma/client.js';

export function createHealthCheck(prisma: PrismaClient) {
  return {
    async databaseAnswers(timeoutMs: number): Promise<boolean> {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      });
      try {
        return await Promise.race([prisma.$queryRaw`SELECT 1`.then(() => true, () => false), timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

export type HealthCheck = ReturnType<typeof createHealthCheck>;
