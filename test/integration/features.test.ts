/**
 * Session features on the wire (docs/protocol.md §4.5), driven by a raw socket peer: a HELLO
 * naming features gets them listed in WELCOME; a feature the server lacks is left out, and a
 * message of a feature the session did not negotiate is refused with a stable code.
 */
import { expect } from 'chai';
import * as net from 'node:net';
import * as path from 'node:path';
import { SurfaceServer } from '../../src/index.js';
import { MessageReader, helloBytes, tempDir } from '../helpers.js';

const base = {
  name: 'raw',
  pid: 1,
  platform: 'linux',
  host: { bootId: null, machineId: null },
  mechanisms: [{ name: 'shm.v1' }],
};

describe('session features in HELLO/WELCOME (raw socket peer)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let server: SurfaceServer;
  let sock: net.Socket;
  let reader: MessageReader;

  beforeEach(async () => {
    tmp = tempDir();
    server = await SurfaceServer.listen({ path: path.join(tmp.dir, 's.sock'), logger: () => {} });
    sock = net.createConnection(server.path);
    await new Promise<void>((r) => sock.once('connect', () => r()));
    reader = new MessageReader(sock);
  });
  afterEach(() => {
    sock.destroy();
    server.close();
    tmp.cleanup();
  });

  const json = (m: Buffer): Record<string, unknown> => JSON.parse(m.subarray(m.indexOf(0x7b)).toString('utf8'));
  const type = (m: Buffer): number => m.readUInt16LE(4);

  it('a HELLO naming frames.v1 gets it back in WELCOME, and frames flow', async () => {
    sock.write(helloBytes({ ...base, features: ['frames.v1'] }));
    const welcome = await reader.next();
    expect(type(welcome)).to.equal(0x02);
    expect(json(welcome).features).to.deep.equal(['frames.v1']);
    const surface = server.createSurface({ width: 16, height: 16 });
    surface.present(surface.acquire());
    expect(type(await reader.next())).to.equal(0x10); // SCANOUT
    expect(type(await reader.next())).to.equal(0x11); // FRAME
  });

  it('a HELLO without features gets a WELCOME without them (frames.v1 implied)', async () => {
    sock.write(helloBytes(base));
    const welcome = json(await reader.next());
    expect(welcome).to.not.have.property('features');
    expect(server.clients[0].features).to.deep.equal(['frames.v1']);
  });

  it('an unknown feature is left out; frames.v1 messages from a session without it are E_UNEXPECTED', async () => {
    sock.write(helloBytes({ ...base, features: ['teleport.v1'] }));
    expect(json(await reader.next()).features).to.deep.equal([]);
    const surface = server.createSurface({ width: 16, height: 16 });
    surface.present(surface.acquire());
    const release = Buffer.alloc(24);
    release.writeUInt32LE(24, 0);
    release.writeUInt16LE(0x12, 4);
    release.writeUInt32LE(surface.id, 8);
    sock.write(release);
    const error = await reader.next();
    expect(type(error)).to.equal(0x03); // no SCANOUT/FRAME came first: the session has no frames.v1
    expect(error.readUInt32LE(8)).to.equal(15); // E_UNEXPECTED
    expect(error.subarray(16).toString()).to.match(/belongs to frames\.v1, which this session did not negotiate/);
  });

  it('a malformed features list is E_MALFORMED', async () => {
    sock.write(helloBytes({ ...base, features: ['frames.v1', 'frames.v1'] }));
    const error = await reader.next();
    expect(type(error)).to.equal(0x03);
    expect(error.readUInt32LE(8)).to.equal(2); // E_MALFORMED
  });
});
