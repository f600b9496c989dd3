// What every command gets: its streams, the HTTP client (made once the key is known), standard
// input read once, and the exit code commands over several ids accumulate.
import type { Client } from './client.js';
import type { Io } from './terminal.js';

export interface Context {
  io: Io;
  client(): Promise<Client>;
  /** Standard input, read once: it may carry the key (--api-key-stdin) and then piped ids. */
  stdin(): Promise<string>;
  /** Set by commands that handle several ids: the worst exit code among them. */
  exitCode: number;
}
