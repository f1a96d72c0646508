// The one sleep of the code base: a promise that resolves after `ms` milliseconds.

/**
 * Resolves after `ms` milliseconds. With `unref`, the pending timer does not keep the
 * process alive (a shim that is otherwise done may exit while a poll loop waits).
 */
export function sleep(ms: number, opts: { unref?: boolean } = {}): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (opts.unref) t.unref();
  });
}
