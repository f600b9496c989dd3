// Entry point: parse config, build, listen, shut down gracefully. Nothing else.
import { buildApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';

function configOrExit(): Config {
  try {
    return loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`keyward: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

async function main() {
  const config = configOrExit();
  const app = await buildApp(config);

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) {
      app.log.warn({ signal }, 'already shutting down');
      return;
    }
    closing = true;
    app.log.info({ signal }, 'shutting down');
    // In-flight requests get SHUTDOWN_TIMEOUT_MS; then their connections are cut and the
    // shutdown carries on (flush hooks, database) rather than dying with it.
    const cut = setTimeout(() => {
      app.log.warn('shutdown deadline reached; closing the remaining connections');
      app.server.closeAllConnections();
    }, config.timeouts.shutdownMs);
    const hard = setTimeout(() => {
      app.log.error('shutdown did not complete; exiting');
      process.exit(1);
    }, config.timeouts.shutdownMs * 2 + 5_000);
    cut.unref();
    hard.unref();
    try {
      await app.close();
      app.log.info('stopped');
      process.exit(0);
    } catch (err) {
      app.log.error({ err }, 'error during shutdown');
      process.exit(1);
    }
  };
  // `on`, not `once`: a second Ctrl-C must not fall through to the default (instant) exit.
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    app.log.error({ err }, 'could not listen');
    await app.close().catch(() => {});
    process.exit(1);
  }
}

main().catch((err) => {
  process.stderr.write(`keyward: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
