/** Severity of a log line; the default logger prints only 'warn' and 'error'. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
/**
 * Receives surfacelink's log lines (one line each, no trailing newline): a function the embedder
 * gives us (`ServerOptions.logger`), never called on per-frame paths. Must not throw.
 */
export type Logger = (level: LogLevel, message: string) => void;

/** Default: warnings and errors to stderr, one line each. */
export const stderrLogger: Logger = (level, message) => {
  if (level === 'debug' || level === 'info') return;
  process.stderr.write(`surfacelink ${level}: ${message}\n`);
};

/** Drops everything. */
export const silentLogger: Logger = () => {};
