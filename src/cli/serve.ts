/**
 * `surfacelink serve`: the demo's producer in the foreground, on a socket other programs
 * (or `surfacelink view`) can connect to, printing each client as it comes and goes with
 * the mechanism it got and why. With --stream it also serves remote viewers (StreamServer)
 * and prints the viewer URL.
 */
import { StreamServer, type ClientInfo, type StreamClientInfo } from '../index.js';
import { PatternProducer } from '../demo/producer.js';
import { SIGNAL_EXIT } from './view.js';

const who = (c: ClientInfo): string => `client ${c.id} "${c.name}" (pid ${c.pid})`;
const remote = (c: StreamClientInfo): string => `stream client ${c.id} "${c.name}" (${c.remoteAddress})`;

export interface StreamServeOptions {
  host?: string;
  port?: number;
}

/** Resolves with the exit status: 1 if serving failed, 130/143 when stopped by SIGINT/SIGTERM. */
export async function runServe(options: { path?: string; width: number; height: number; fps: number; stream?: StreamServeOptions | null }): Promise<number> {
  let fail: ((error: Error) => void) | null = null;
  let early: Error | null = null; // a failure before anyone was listening for one
  let producer: PatternProducer;
  try {
    producer = await PatternProducer.start({
      ...options,
      name: 'surfacelink-serve',
      // Disconnects and fallbacks arrive as events and are printed below; only the rest is logged.
      logger: (level, message) => level === 'error' && process.stderr.write(`surfacelink serve: ${message}\n`),
      onError: (e) => (fail ? fail(e) : (early = e)),
    });
  } catch (error) {
    const e = error as { code?: string; message?: string };
    process.stderr.write(`surfacelink serve: ${e.code ?? 'error'}: ${e.message ?? String(error)}\n`);
    return 1;
  }
  const { server, surface } = producer;
  let streamServer: StreamServer | null = null;
  if (options.stream) {
    try {
      streamServer = await StreamServer.start(server, { host: options.stream.host, port: options.stream.port, logger: (level, message) => level === 'error' && process.stderr.write(`surfacelink serve: ${message}\n`) });
    } catch (error) {
      const e = error as { code?: string; message?: string };
      process.stderr.write(`surfacelink serve: cannot serve the stream: ${e.code ?? 'error'}: ${e.message ?? String(error)}\n`);
      producer.stop();
      return 1;
    }
  }
  process.stdout.write(`serving ${surface.width}x${surface.height} ${surface.format.name} at ${options.fps} fps via ${surface.mechanism} on ${server.path}\n`);
  process.stdout.write(`view it with: surfacelink view --path ${server.path}   (Ctrl-C stops)\n`);
  const stream = streamServer;
  if (stream) {
    process.stdout.write(`stream: ${stream.url}\n`);
    process.stdout.write(`  open that URL in a browser, or: surfacelink view --remote '${stream.url}'\n`);
    process.stdout.write(`  codecs: tiles${stream.h264Encoder ? `, h264 via ${stream.h264Encoder}` : ' (no H.264 encoder here)'}\n`);
    stream.on('client', (c) => process.stdout.write(`+ ${remote(c)}: ${c.codec} (${c.reason})\n`));
    stream.on('clientGone', (c, why) => process.stdout.write(`- ${remote(c)} left: ${why.code}: ${why.message} (${c.framesSent} frames sent, ${c.framesSkipped} skipped, ${c.bytesSent} bytes)\n`));
  }
  server.on('client', (c) => process.stdout.write(`+ ${who(c)}: ${c.mechanism} (${c.reason})\n`));
  server.on('clientMechanism', (c) => process.stdout.write(`~ ${who(c)} now uses ${c.mechanism} (${c.reason})\n`));
  server.on('clientGone', (c, why) =>
    process.stdout.write(`- ${who(c)} left: ${why.code}: ${why.message} (${c.framesDelivered} frames delivered, ${c.framesSkipped} skipped)\n`),
  );

  return new Promise<number>((resolve) => {
    const stop = (code: number, line: string, out: NodeJS.WriteStream = process.stdout): void => {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
      fail = null;
      streamServer?.close();
      producer.stop();
      out.write(`${line}\n`);
      resolve(code);
    };
    const onSigint = (): void => stop(SIGNAL_EXIT.SIGINT, `stopped after ${producer.presented} frames`);
    const onSigterm = (): void => stop(SIGNAL_EXIT.SIGTERM, `stopped after ${producer.presented} frames`);
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigterm);
    fail = (e) => stop(1, `surfacelink serve: presenting failed: ${(e as { code?: string }).code ?? e.name}: ${e.message}`, process.stderr);
    if (early) fail(early);
  });
}
