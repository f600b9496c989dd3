import { buildApp } from './app.js';
import { loadConfig } from './config.js';

/**
 * The OpenAPI document exactly as the server serves it, built without touching a database
 * (Prisma connects lazily, and migrations are switched off).
 */
export async function generateOpenApiDocument(): Promise<string> {
  const config = loadConfig({
    DATABASE_URL: 'postgresql://openapi@127.0.0.1:1/unused',
    DB_MIGRATE_ON_START: 'false',
    LOG_LEVEL: 'silent',
  });
  const app = await buildApp(config);
  try {
    await app.ready();
    return `${JSON.stringify(app.swagger(), null, 2)}\n`;
  } finally {
    await app.close();
  }
}
