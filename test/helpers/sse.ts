// Reads a Server-Sent Events stream over a real socket, as received (for asserting what the
// server sends; the consumer library uses a maintained client). node:http, not fetch: undici
// opens a spare connection when a streamed body is aborted, and a connection that never sends a
// request holds the server's close() until its headers timeout.
import http from 'node:http';
export interface SseEvent {
  event: string;
  data: string;
  at: number;
}

export interface SseReader {
  status: number;
  headers: http.IncomingHttpHeaders;
  events: SseEvent[];
  /** Raw bytes received, to assert what never appears in them. */
  raw(): string;
  /** Resolves when an event matching `pred` (from index `from`) arrives. */
  next(pred: (e: SseEvent) => boolean, timeoutMs?: number, from?: number): Promise<SseEvent>;
  ended: Promise<void>;
  close(): void;
}

export async function openSse(url: string, apiKey: string, opts: { localAddress?: string } = {}): Promise<SseReader> {
  const req = http.get(url, { headers: { 'x-api-key': apiKey, accept: 'text/event-stream' }, agent: false, localAddress: opts.localAddress });
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => req.once('response', resolve).once('error', reject));
  const events: SseEvent[] = [];
  let raw = '';
  let buffer = '';
  const waiters = new Set<() => void>();
  const ended = (async () => {
    res.setEncoding('utf8');
    try {
      for await (const chunk of res) {
        const text = chunk as string;
        raw += text;
        buffer += text;
        let i: number;
        while ((i = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, i);
          buffer = buffer.slice(i + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          events.push({ event, data: data.join('\n'), at: performance.now() });
          waiters.forEach((w) => w());
        }
      }
    } catch {
      // aborted
    } finally {
      waiters.forEach((w) => w());
    }
  })();
  let done = false;
  void ended.then(() => (done = true));
  return {
    status: res.statusCode!,
    headers: res.headers,
    events,
    raw: () => raw,
    ended,
    close: () => req.destroy(),
    next(pred, timeoutMs = 5_000, from = 0) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = events.slice(from).find(pred);
          if (found) {
            cleanup();
            resolve(found);
          } else if (done) {
            cleanup();
            reject(new Error(`stream ended without the event; got ${events.map((e) => e.event).join(', ')}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no such event within ${timeoutMs} ms; got ${events.map((e) => `${e.event} ${e.data}`).join(' | ')}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}
