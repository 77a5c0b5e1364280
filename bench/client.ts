/** Bench peer: a client in its own process that releases every frame as soon as it arrives. */
import { SurfaceClient } from '../src/index.js';

SurfaceClient.connect({ path: process.argv[2], name: 'bench' }).then((client) => {
  client.on('frame', (frame) => frame.release());
  client.on('disconnect', () => process.exit(0));
  process.send?.('ready');
});
