/** Bench peer: a client in its own process that releases every frame as soon as it arrives. */
import { SurfaceClient } from '../src/index.js';

SurfaceClient.connect({ path: process.argv[2], name: 'bench', mechanisms: [process.argv[3] ?? 'shm.v1'] }).then(
  (client) => {
    client.on('frame', (frame) => frame.release());
    client.on('disconnect', () => process.exit(0));
    process.send?.('ready');
  },
);
