#!/usr/bin/env node
'use strict';
/**
 * A surfacelink producer: one small XRGB8888 surface, a moving box whose colour encodes the
 * frame number (see pattern.js), presented at a steady rate with damage.
 *
 *   node examples/producer.js [socket-path] [--fps N]
 *
 * Without a socket path it listens on the default one ($XDG_RUNTIME_DIR/surfacelink/default.sock).
 * Prints one status line per second; SIGINT (Ctrl-C) or SIGTERM stops it cleanly (exit status 0).
 */
const { SurfaceServer } = require('surfacelink');
const { WIDTH, HEIGHT, FORMAT, paintFrame, frameDamage } = require('./pattern.js');

function parseArgs(argv) {
  const options = { path: undefined, fps: 30 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--fps') {
      options.fps = Number(argv[++i]);
      if (!(options.fps > 0 && options.fps <= 1000)) usage(`--fps wants a number in (0, 1000], got ${argv[i]}`);
    } else if (arg === '-h' || arg === '--help') {
      usage();
    } else if (arg.startsWith('-')) {
      usage(`unknown option ${arg}`);
    } else if (options.path === undefined) {
      options.path = arg;
    } else {
      usage(`unexpected argument ${arg}`);
    }
  }
  return options;
}

function usage(problem) {
  if (problem) console.error(`producer: ${problem}`);
  console.error('usage: node examples/producer.js [socket-path] [--fps N]');
  process.exit(problem ? 2 : 0);
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const server = await SurfaceServer.listen(options.path === undefined ? {} : { path: options.path });
  let surface;
  try {
    surface = server.createSurface({
      width: WIDTH,
      height: HEIGHT,
      format: FORMAT,
      buffers: 3,
      label: 'surfacelink-example',
    });
  } catch (error) {
    server.close();
    throw error;
  }

  server.on('client', (info) =>
    console.log(`producer: client ${info.id} (pid ${info.pid}, "${info.name}") uses ${info.mechanism}: ${info.reason}`),
  );
  server.on('clientMechanism', (info) =>
    console.log(`producer: client ${info.id} switched to ${info.mechanism}: ${info.reason}`),
  );
  server.on('clientGone', (info, why) =>
    console.log(`producer: client ${info.id} left (${why.code}: ${why.message}) after ${info.framesDelivered} frames`),
  );

  // Which frame each pooled buffer shows, so a reused buffer is repainted only where it differs.
  const shows = new WeakMap();
  let frame = 0;
  let framesAtLastLine = 0;
  let timer = null;
  let stopping = false;
  const period = 1000 / options.fps;
  let due = performance.now();

  function presentNext() {
    const n = frame + 1;
    // Never blocks: a free buffer, or the pool grows; null when every buffer (up to maxBuffers) is held by
    // viewers within their release deadlines: skip this frame, the next tick presents the newest.
    const buffer = surface.tryAcquire();
    if (!buffer) return;
    try {
      paintFrame(buffer.pixels(), buffer.stride, n, shows.get(buffer));
    } catch (error) {
      surface.discard(buffer);
      throw error;
    }
    shows.set(buffer, n);
    // Frame 1 has nothing to be relative to: no damage list = the whole surface.
    surface.present(buffer, n === 1 ? undefined : { damage: frameDamage(n) });
    frame = n; // === the sequence viewers receive: the surface's present counter starts at 1
  }

  function tick() {
    timer = null;
    try {
      presentNext();
    } catch (error) {
      console.error(`producer: present failed: ${error && error.message}`);
      process.exitCode = 1;
      stop('error');
      return;
    }
    // A steady rate: schedule against the clock, not the previous callback (no drift);
    // after a long stall start again from now instead of presenting a burst.
    due += period;
    const now = performance.now();
    if (due < now - 5 * period) due = now;
    timer = setTimeout(tick, Math.max(0, due - now));
  }

  const statusTimer = setInterval(() => {
    const clients = server.clients;
    const mechanisms = clients.map((c) => c.mechanism).join(', ');
    console.log(
      `producer: frame ${frame}, ${frame - framesAtLastLine} fps, ${clients.length} ` +
        `client(s)${clients.length > 0 ? ` (${mechanisms})` : ''}`,
    );
    framesAtLastLine = frame;
  }, 1000);

  function stop(why) {
    if (stopping) return;
    stopping = true;
    if (timer !== null) clearTimeout(timer);
    clearInterval(statusTimer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    try {
      surface.close(); // clients are told the surface is gone
    } finally {
      server.close(); // closes every connection and the listening socket, removes the socket file
    }
    console.log(`producer: stopped (${why}) after ${frame} frames`);
    // Nothing is left on the event loop: the process exits by itself.
  }

  function onSignal(signal) {
    stop(signal);
  }
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  console.log(
    `producer: listening on ${server.path}; surface ${surface.id} ${WIDTH}x${HEIGHT} ${FORMAT} ` +
      `(${surface.mechanism}), ${options.fps} fps; Ctrl-C stops`,
  );
  tick();
}

main().catch((error) => {
  console.error(
    `producer: ${error && error.code ? `${error.code}: ` : ''}${error && error.message ? error.message : error}`,
  );
  process.exitCode = 1;
});
