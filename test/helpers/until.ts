/** Polls `check` every 10 ms until it holds; resolves with the milliseconds it took, or throws after `timeoutMs`. */
export async function until(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await check()) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}
