// Whether the database answers: the health route's one question, with a deadline of its own (a
// database that accepts connections but never answers must not hang the check).
import type { PrismaClient } from '../generated/prisma/client.js';
import { withinDeadline } from '../lib/deadline.js';

export function createHealthCheck(prisma: PrismaClient) {
  return {
    async databaseAnswers(timeoutMs: number): Promise<boolean> {
      const answered = prisma.$queryRaw`SELECT 1`.then(() => true, () => false);
      return (await withinDeadline(answered, timeoutMs)) === true;
    },
  };
}

export type HealthCheck = ReturnType<typeof createHealthCheck>;
