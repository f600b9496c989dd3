// Runs the server as a user would (the README's start command) and watches its JSON log.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

export interface RunningServer {
  child: ChildProcess;
  logs: Array<Record<string, any>>;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `npm start` with exactly the given environment (plus PATH/HOME), nothing inherited. */
export function startServer(env: Record<string, string>, opts: { cwd?: string } = {}): RunningServer {
  const child = spawn('npm', ['start', '--silent'], {
    cwd: opts.cwd ?? ROOT,
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, any>> = [];
  let raw = '';
  let buffer = '';
  child.stdout!.on('data', (chunk) => {
    raw += chunk;
    buffer += chunk;
    const lines = buffer.split('\n');
    buffer = lines.pop()!;
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line));
      } catch {
        // not a log line
      }
    }
  });
  child.stderr!.on('data', (chunk) => (raw += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, logs, output: () => raw, exited };
}

/** The node process itself (npm start is its parent), from its own log lines. */
export const serverPid = (s: RunningServer) => s.logs.find((l) => typeof l.pid === 'number')?.pid as number | undefined;

/** SIGKILL to the node process, not only npm above it, so a failed test leaves no server running. */
export function killHard(s: RunningServer) {
  const pid = serverPid(s);
  if (pid) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  if (s.child.exitCode === null) s.child.kill('SIGKILL');
}

export async function waitForHealthy(port: number, server: RunningServer, timeoutMs = 60_000): Promise<number> {
  const started = Date.now();
  let exited = false;
  void server.exited.then(() => (exited = true));
  while (Date.now() - started < timeoutMs) {
    if (exited) throw new Error(`server exited before it was healthy:\n${server.output()}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/health`);
      if (res.status === 200) return Date.now() - started;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server not healthy after ${timeoutMs} ms:\n${server.output()}`);
}
