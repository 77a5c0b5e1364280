/** Helpers for emitting events to application code. */

/**
 * Runs an application listener. If it throws, that is the application's bug, not the peer's:
 * it is rethrown as an uncaught exception (like a throw in a timer) instead of ending the session.
 */
export function emitSafely(emit: () => void): void {
  try {
    emit();
  } catch (error) {
    queueMicrotask(() => {
      throw error;
    });
  }
}

