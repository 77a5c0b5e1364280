#!/usr/bin/env node
'use strict';
/**
 * A surfacelink viewer for producer.js: connects, says which mechanism was negotiated and why,
 * checks every pixel of every frame against the pattern of its sequence number and the damage
 * against what changed since the frame it saw before, releases every frame, and prints stats
 * once per second.
 *
 *   node examples/viewer.js [socket-path] [--frames N] [--wait-ms MS]
 *
 * --frames N: stop after N frames; exit status 0 if all N matched, 1 otherwise (also if the
 * producer goes away first). Without it the viewer runs until Ctrl-C or until the producer
 * stops, and exits 0 if every frame it received matched.
 * --wait-ms MS: keep retrying the connection this long while no producer listens (default 5000).
 */
const { SurfaceClient } = require('surfacelink');
const { WIDTH, HEIGHT, FORMAT, checkFrame, checkDamage } = require('./pattern.js');

function parseArgs(argv) {
  const options = { path: undefined, frames: 0, waitMs: 5000 };
  const positiveInteger = (name, text) => {
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < 0) usage(`${name} wants a non-negative integer, got ${text}`);
    return value;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--frames') options.frames = positiveInteger(arg, argv[++i]);
    else if (arg === '--wait-ms') options.waitMs = positiveInteger(arg, argv[++i]);
    else if (arg === '-h' || arg === '--help') usage();
    else if (arg.startsWith('-')) usage(`unknown option ${arg}`);
    else if (options.path === undefined) options.path = arg;
    else usage(`unexpected argument ${arg}`);
  }
  return options;
}

function usage(problem) {
  if (problem) console.error(`viewer: ${problem}`);
  console.error('usage: node examples/viewer.js [socket-path] [--frames N] [--wait-ms MS]');
  process.exit(problem ? 2 : 0);
}

/** Connects, retrying while there is no server yet (E_CONNECT) until `waitMs` has passed. */
async function connect(options) {
  const deadline = Date.now() + options.waitMs;
  for (;;) {
    try {
      return await SurfaceClient.connect({
        name: 'surfacelink example viewer',
        ...(options.path === undefined ? {} : { path: options.path }),
      });
    } catch (error) {
      if (error.code !== 'E_CONNECT' || Date.now() >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const client = await connect(options);

  const stats = { received: 0, verified: 0, mismatched: 0, skipped: 0 };
  let lastSequence = 0; // the sequence of the previous frame received (0: none yet)
  let receivedAtLastLine = 0;
  let finished = false;

  let negotiated = '';
  const logNegotiation = (n) => {
    const line = `${n.mechanism}: ${n.reason}`;
    if (line === negotiated) return;
    negotiated = line;
    console.log(`viewer: negotiated ${line}`);
    for (const r of n.rejected) console.log(`viewer:   not ${r.name}: ${r.reason}`);
  };
  logNegotiation(client.negotiation);
  client.on('negotiated', logNegotiation); // again if the server falls back to another mechanism

  function mismatch(sequence, problem) {
    stats.mismatched++;
    if (stats.mismatched <= 5) console.error(`viewer: frame ${sequence} MISMATCH: ${problem}`);
    else if (stats.mismatched === 6) console.error('viewer: (further mismatches are counted, not printed)');
  }

  client.on('frame', (frame) => {
    const sequence = frame.sequence;
    try {
      stats.received++;
      // Latest wins: a gap in the sequence means we were slower than the producer.
      if (lastSequence > 0 && sequence > lastSequence + 1) stats.skipped += sequence - lastSequence - 1;
      const problem =
        sequence <= lastSequence
          ? `sequence ${sequence} after ${lastSequence}`
          : frame.width !== WIDTH || frame.height !== HEIGHT || frame.format.name !== FORMAT
            ? `${frame.width}x${frame.height} ${frame.format.name}, expected ${WIDTH}x${HEIGHT} ${FORMAT}`
            : (checkFrame(frame.pixels(), frame.stride, sequence) ?? checkDamage(frame.damage, lastSequence, sequence));
      if (problem === null) stats.verified++;
      else mismatch(sequence, problem);
      lastSequence = Math.max(lastSequence, sequence);
    } catch (error) {
      mismatch(sequence, `could not be read: ${error.message}`);
    } finally {
      frame.release(); // every frame, also a bad one: the producer may reuse the buffer now
    }
    if (options.frames > 0 && stats.received >= options.frames) finish('done');
  });

  client.on('disconnect', ({ code, message }) => {
    console.log(`viewer: disconnected: ${code}: ${message}`);
    finish('producer gone');
  });

  const statusTimer = setInterval(() => {
    console.log(
      `viewer: ${stats.received - receivedAtLastLine} frames/s; ${stats.received} received, ` +
        `${stats.verified} verified, ${stats.mismatched} mismatched, ${stats.skipped} skipped; ` +
        `last sequence ${lastSequence} (${client.mechanism})`,
    );
    receivedAtLastLine = stats.received;
  }, 1000);

  const onSignal = (signal) => finish(signal);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  function finish(why) {
    if (finished) return;
    finished = true;
    clearInterval(statusTimer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    client.close();
    const wanted = options.frames > 0 ? options.frames : 1;
    const ok = stats.mismatched === 0 && stats.verified >= wanted;
    console.log(
      `viewer: ${why}: received=${stats.received} verified=${stats.verified} mismatched=${stats.mismatched} ` +
        `skipped=${stats.skipped} mechanism=${client.mechanism} result=${ok ? 'OK' : 'FAIL'}`,
    );
    process.exitCode = ok ? 0 : 1;
  }
}

main().catch((error) => {
  console.error(
    `viewer: ${error && error.code ? `${error.code}: ` : ''}${error && error.message ? error.message : error}`,
  );
  process.exitCode = 1;
});
