import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

const ROOT = path.resolve(import.meta.dirname, '..');

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('has sane defaults, including finite timeouts', () => {
    const c = loadConfig({});
    expect(c.host).toBe('127.0.0.1');
    expect(c.port).toBe(3000);
    expect(c.databaseUrl).toBeNull();
    expect(c.dataDir).toBe(path.resolve('./data'));
    expect(c.log.level).toBe('info');
    expect(c.timeouts.requestMs).toBe(30_000);
    expect(c.timeouts.connectionMs).toBe(90_000);
    expect(c.timeouts.shutdownMs).toBe(10_000);
    expect(c.timeouts.dbHealthMs).toBe(2_000);
    expect(c.db.migrateOnStart).toBe(true);
  });

  it('parses every variable', () => {
    const c = loadConfig({
      DATABASE_URL: 'postgresql://u:p@db.example:5433/keys',
      HOST: '0.0.0.0',
      PORT: '8080',
      LOG_LEVEL: 'debug',
      DATA_DIR: '/var/lib/keyward',
      REQUEST_TIMEOUT_MS: '5000',
      CONNECTION_TIMEOUT_MS: '70000',
      KEEP_ALIVE_TIMEOUT_MS: '65000',
      SHUTDOWN_TIMEOUT_MS: '4000',
      DB_HEALTH_TIMEOUT_MS: '500',
      DB_CONNECT_TIMEOUT_MS: '1500',
      DB_POOL_MAX: '3',
      DB_MIGRATE_ON_START: 'false',
      LOG_FORMAT: 'json',
      LAST_USED_FLUSH_MS: '1000',
    });
    expect(c).toMatchObject({
      databaseUrl: 'postgresql://u:p@db.example:5433/keys',
      host: '0.0.0.0',
      port: 8080,
      dataDir: '/var/lib/keyward',
      log: { level: 'debug', format: 'json' },
      timeouts: { requestMs: 5000, connectionMs: 70000, keepAliveMs: 65000, shutdownMs: 4000, dbHealthMs: 500, dbConnectMs: 1500, checkingIntervalMs: 500 },
      db: { migrateOnStart: false, poolMax: 3 },
      lastUsedFlushMs: 1000,
      metrics: { enabled: false, port: null, host: '0.0.0.0' },
      tls: null,
    });
  });

  it('accepts TRUST_PROXY as false or a list of proxy addresses, never "trust everyone"', () => {
    expect(loadConfig({}).trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1,::1' }).trustProxy).toBe('10.0.0.0/8, 127.0.0.1,::1');
    expect(configError({ TRUST_PROXY: 'true' }).message).toContain('TRUST_PROXY');
    expect(configError({ TRUST_PROXY: '2' }).message).toContain('TRUST_PROXY');
  });

  it.each([
    ['0.0.0.0/0', 4],
    ['::/0', 6],
    ['0.0.0.0/1,128.0.0.0/1', 4],
    ['::/1, 8000::/1', 6],
    ['0.0.0.0/2,64.0.0.0/2,128.0.0.0/2,192.0.0.0/3,224.0.0.0/3', 4],
    ['::ffff:0:0/96', 4], // every IPv4 client, written as IPv4-mapped IPv6
    ['::ffff:0.0.0.0/97,::ffff:128.0.0.0/97', 4],
  ])('refuses TRUST_PROXY=%s, which trusts every IPv%i address', (value, family) => {
    const err = configError({ TRUST_PROXY: value });
    expect(err.issues).toEqual([
      `TRUST_PROXY: must list your proxies only: this value trusts every IPv${family} address, so any client could choose its own address; list only your proxies' addresses or CIDRs (got ${JSON.stringify(value)})`,
    ]);
  });

  it.each([
    ['0.0.0.0/1', 'contains 0.0.0.0/1, wider than any network of proxies (the widest accepted is /8 for IPv4)'],
    ['10.0.0.1,64.0.0.0/3', 'contains 64.0.0.0/3, wider than any network of proxies (the widest accepted is /8 for IPv4)'],
    ['2000::/4', 'contains 2000::/4, wider than any network of proxies (the widest accepted is /16 for IPv6)'],
  ])('refuses TRUST_PROXY=%s, a prefix no proxy network needs', (value, problem) => {
    expect(configError({ TRUST_PROXY: value }).issues).toEqual([`TRUST_PROXY: must list your proxies only: this value ${problem} (got ${JSON.stringify(value)})`]);
  });

  it.each(['10.0.0.0/8,192.168.0.0/16,172.16.0.0/12', '::1, 127.0.0.1', '2001:db8::/32', 'fd00::/16', '::ffff:10.0.0.0/104'])(
    'accepts TRUST_PROXY=%s (proxies, not everyone)',
    (value) => {
      expect(loadConfig({ TRUST_PROXY: value }).trustProxy).toBe(value);
    },
  );

  it('TRUST_PROXY=0.0.0.0/0 stops the real server with exit 2 and a message, not a TypeError', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, TRUST_PROXY: '0.0.0.0/0', DATABASE_URL: 'postgresql://u@127.0.0.1:1/x' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('TRUST_PROXY: must list your proxies only: this value trusts every IPv4 address');
    expect(r.stderr).not.toMatch(/TypeError/);
  });

  it('parses the webhook and policy variables: defaults, spans, and what a bad one says (never the key)', () => {
    const d = loadConfig({});
    expect(d.webhooks).toMatchObject({ secretKey: null, allowHttp: false, allowedNetworks: [], timeoutMs: 10_000, disableAfterMs: 5 * 86_400_000, concurrency: 8, retentionDays: 30 });
    // The Standard Webhooks schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the first attempt.
    expect(d.webhooks.retryScheduleMs).toEqual([5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]);
    expect(d.policies).toEqual({ expiryLeadsMs: [14 * 86_400_000, 86_400_000], idleDisableDays: null, intervalMs: 60_000 });
    const key = Buffer.alloc(32, 7);
    const c = loadConfig({ WEBHOOK_SECRET_KEY: key.toString('base64'), WEBHOOK_RETRY_SCHEDULE: '250ms,1s', EXPIRY_WARNING_LEADS: '1d,30d,1d', IDLE_KEY_DISABLE_DAYS: '90', WEBHOOK_ALLOWED_NETWORKS: '10.20.0.0/16, fd00::/8' });
    expect(c.webhooks.secretKey).toEqual(key);
    expect(loadConfig({ WEBHOOK_SECRET_KEY: key.toString('hex') }).webhooks.secretKey).toEqual(key);
    expect(c.webhooks.retryScheduleMs).toEqual([250, 1_000]);
    expect(c.webhooks.allowedNetworks).toEqual(['10.20.0.0/16', 'fd00::/8']);
    expect(c.policies).toMatchObject({ expiryLeadsMs: [30 * 86_400_000, 86_400_000], idleDisableDays: 90 });
    expect(loadConfig({ EXPIRY_WARNING_LEADS: 'none', WEBHOOK_RETRY_SCHEDULE: 'none' })).toMatchObject({ policies: { expiryLeadsMs: [] }, webhooks: { retryScheduleMs: [] } });

    const shortKey = Buffer.alloc(16, 9).toString('base64');
    const bad = configError({ WEBHOOK_SECRET_KEY: shortKey, WEBHOOK_RETRY_SCHEDULE: '5s,soon', WEBHOOK_ALLOWED_NETWORKS: '10.0.0.1/8', WEBHOOK_DISABLE_AFTER: '1d,2d' });
    const text = bad.issues.join('\n');
    expect(text).toContain('WEBHOOK_SECRET_KEY: must be 32 random bytes as base64 or hex');
    expect(text).not.toContain(shortKey);
    expect(text).toMatch(/WEBHOOK_RETRY_SCHEDULE: must be the waits before each retry: comma-separated spans/);
    expect(text).toMatch(/WEBHOOK_ALLOWED_NETWORKS: must be comma-separated CIDR blocks: 10\.0\.0\.1\/8 has host bits set/);
    expect(configError({ WEBHOOK_DISABLE_AFTER: '1d,2d' }).issues).toEqual(['WEBHOOK_DISABLE_AFTER: must be one span, such as 5d']);
  });

  it('parses the usage variables, and refuses rollups that would make days before hours', () => {
    expect(loadConfig({}).usage).toEqual({ enabled: true, flushMs: 10_000, minutesKeptMs: 48 * 3_600_000, hoursKeptMs: 90 * 86_400_000, retentionDays: 400, maxPending: 200_000 });
    expect(loadConfig({ USAGE_COUNTING: 'false', USAGE_MINUTES_KEPT: '6h', USAGE_HOURS_KEPT: '7d', USAGE_RETENTION_DAYS: '30' }).usage).toMatchObject({ enabled: false, minutesKeptMs: 6 * 3_600_000, hoursKeptMs: 7 * 86_400_000, retentionDays: 30 });
    expect(configError({ USAGE_MINUTES_KEPT: '10d', USAGE_HOURS_KEPT: '2d' }).issues).toEqual(['USAGE_HOURS_KEPT: must be at least USAGE_MINUTES_KEPT (hours are made from minutes)']);
    expect(configError({ USAGE_RETENTION_DAYS: '30' }).issues).toEqual(['USAGE_RETENTION_DAYS: must cover at least USAGE_HOURS_KEPT (days are made from hours)']);
    expect(configError({ USAGE_MINUTES_KEPT: '1h,2h' }).issues).toEqual(['USAGE_MINUTES_KEPT: must be one span, such as 48h']);
    expect(configError({ USAGE_MINUTES_KEPT: '5m' }).issues[0]).toMatch(/^USAGE_MINUTES_KEPT: must be one span of at least 1h/);
  });

  it('refuses a keep-alive longer than the idle-socket timeout', () => {
    const err = configError({ KEEP_ALIVE_TIMEOUT_MS: '100000', CONNECTION_TIMEOUT_MS: '90000' });
    expect(err.message).toContain('KEEP_ALIVE_TIMEOUT_MS');
  });

  it('refuses argon2 parameters below the OWASP minimum outside tests', () => {
    expect(configError({ ARGON2_MEMORY_KIB: '1024' }).message).toContain('ARGON2_MEMORY_KIB');
    expect(configError({ ARGON2_TIME_COST: '1' }).message).toContain('ARGON2_TIME_COST');
    expect(loadConfig({ NODE_ENV: 'test', ARGON2_MEMORY_KIB: '1024', ARGON2_TIME_COST: '1' }).argon2).toMatchObject({ memoryKib: 1024, timeCost: 1, parallelism: 1 });
  });

  it('never echoes JIM_INFRASTRUCTURE_API_KEY', () => {
    const err = configError({ JIM_INFRASTRUCTURE_API_KEY: 'jim_ak_supersecretvalue0000000000000', PORT: 'x' });
    expect(err.message).not.toContain('supersecretvalue');
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ DATABASE_URL: '', PORT: '' })).toMatchObject({ databaseUrl: null, port: 3000 });
  });

  it.each([
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['LOG_LEVEL', 'loud'],
    ['REQUEST_TIMEOUT_MS', '0'],
    ['DB_MIGRATE_ON_START', 'yes'],
    ['NODE_ENV', 'staging'],
    ['TRUST_PROXY', 'yes'],
    ['TRUST_PROXY', '10.0.0.0/33'],
    ['DB_POOL_MAX', '0'],
    ['LOG_FORMAT', 'xml'],
  ])('rejects %s=%s, naming the variable', (name, value) => {
    const err = configError({ [name]: value });
    expect(err.message).toContain(`${name}:`);
    expect(err.issues).toHaveLength(1);
  });

  it('reports every bad variable at once', () => {
    const err = configError({ PORT: '-1', LOG_LEVEL: 'x' });
    expect(err.issues.map((i) => i.split(':')[0]).sort()).toEqual(['LOG_LEVEL', 'PORT']);
  });

  it.each([
    'mysql://admin:hunter2secret@db:3306/x',
    'not a url with hunter2secret',
    'postgresql://admin:hunter2secret@/nohost',
  ])('names DATABASE_URL but never echoes it (%#)', (value) => {
    const err = configError({ DATABASE_URL: value });
    expect(err.message).toContain('DATABASE_URL');
    expect(err.message).not.toContain('hunter2secret');
    expect(err.message).not.toContain('admin');
  });

  it('names REDIS_URL but never echoes it', () => {
    const err = configError({ REDIS_URL: 'http://:redispassword123@cache:6379' });
    expect(err.message).toContain('REDIS_URL');
    expect(err.message).not.toContain('redispassword123');
    expect(loadConfig({ REDIS_URL: 'redis://:pw@127.0.0.1:6379/0' }).rateLimit.redisUrl).toBe('redis://:pw@127.0.0.1:6379/0');
  });

  it('stops the real server at start-up with a readable message and no secret', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, DATABASE_URL: 'mysql://root:topsecretpw@db/x', PORT: 'http' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('invalid configuration');
    expect(r.stderr).toContain('DATABASE_URL');
    expect(r.stderr).toContain('PORT');
    expect(r.stderr + r.stdout).not.toContain('topsecretpw');
  });
});
