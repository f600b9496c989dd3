// A real webhook receiver on loopback: every request recorded, its signature checked with the
// standardwebhooks package (a verifier we did not write, timestamp tolerance included), its
// answer chosen by the test.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface Received {
  id: string;
  timestamp: string;
  signature: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The parsed body when the signature verified with one of the receiver's secrets, else null. */
  verified: Record<string, any> | null;
  verifyError: string | null;
  /** Set once the receiver has answered it (a held request dies unanswered with its sender). */
  answered: number | null;
  at: number;
}

/** What to answer: a status (with headers), 'hang' (never answer), or a function deciding per request. */
export type Answer = { status: number; headers?: Record<string, string>; body?: string } | 'hang';

export interface Receiver {
  url: string;
  port: number;
  received: Received[];
  /** The secrets signatures are checked against (set after creating the subscription). */
  secrets: string[];
  answer: (r: Received, index: number) => Answer;
  ofType(type: string): Received[];
  /** How many times each webhook-id arrived. */
  counts(): Map<string, number>;
  close(): Promise<void>;
}

export async function startReceiver(path = '/hooks'): Promise<Receiver> {
  const received: Received[] = [];
  const held = new Set<http.ServerResponse>();
  const state: Receiver = {
    url: '',
    port: 0,
    received,
    secrets: [],
    answer: () => ({ status: 204 }),
    ofType: (type) => received.filter((r) => r.verified?.type === type),
    counts() {
      const m = new Map<string, number>();
      for (const r of received) m.set(r.id, (m.get(r.id) ?? 0) + 1);
      return m;
    },
    close: async () => {
      for (const res of held) res.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const h = req.headers;
      const r: Received = {
        id: String(h['webhook-id'] ?? ''),
        timestamp: String(h['webhook-timestamp'] ?? ''),
        signature: String(h['webhook-signature'] ?? ''),
        headers: h,
        body,
        verified: null,
        verifyError: null,
        answered: null,
        at: Date.now(),
      };
      const errors: string[] = [];
      for (const secret of state.secrets) {
        try {
          r.verified = new Webhook(secret).verify(body, h as Record<string, string>) as Record<string, any>;
          break;
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
      if (!r.verified) r.verifyError = errors.join('; ') || 'no secret to verify with';
      received.push(r);
      const a = state.answer(r, received.length - 1);
      if (a === 'hang') {
        held.add(res);
        res.on('close', () => held.delete(res));
        return;
      }
      r.answered = a.status;
      res.writeHead(a.status, a.headers).end(a.body ?? '');
    });
  });
  server.keepAliveTimeout = 100;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  state.port = (server.address() as AddressInfo).port;
  state.url = `http://127.0.0.1:${state.port}${path}`;
  return state;
}
