/** Helpers for emitting events to application code. */

/**
 * For a listener that threw: that is the application's bug, not the peer's. It is rethrown
 * as an uncaught exception (like a throw in a timer) instead of ending the session. Call it
 * from a catch around the emit, so the per-frame path allocates nothing.
 */
export function rethrowLater(error: unknown): void {
  queueMicrotask(() => {
    throw error;
  });
}
