/** Logging is a function the embedder gives us; never called on per-frame paths. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, message: string) => void;

/** Default: warnings and errors to stderr, one line each. */
export const stderrLogger: Logger = (level, message) => {
  if (level === 'debug' || level === 'info') return;
  process.stderr.write(`surfacelink ${level}: ${message}\n`);
};

export const silentLogger: Logger = () => {};
