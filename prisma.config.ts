// Read by the Prisma CLI (`prisma generate`, and `prisma migrate` on machines that reach
// Prisma's binary host). process.env is read here, not env(): env() throws when the variable
// is unset, which would break `prisma generate` in builds without a database.
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? '' },
});
