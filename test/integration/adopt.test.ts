/**
 * adoptSurface: someone else's buffers shared as they are (separate processes). A memfd sealed
 * against shrinking reaches clients as the same memory; an unsealed one could be shrunk under a
 * reader, so clients get a sealed copy through the one CPU-copy adapter — kept up to date on
 * each present — and the server can say which and why.
 */
import { expect } from 'chai';
import { Peer, PeerGroup, eventually } from '../helpers.js';

describe('adoptSurface: memfds made by another program (shm.v1)', function () {
  this.timeout(60000);
  let group: PeerGroup;
  let server: Peer;

  beforeEach(async () => {
    group = new PeerGroup();
    server = await group.server();
  });
  afterEach(() => group.cleanup());

  it(
    'a sealed memfd is shared without a copy: ' + 'the client maps the same inode and sees a write with no message',
    async () => {
      const adopted = await server.call('adoptMemfd', { width: 64, height: 32, sealed: true });
      expect(adopted.sharing.how).to.equal('same memory');
      const c = await group.client({ releaseMode: 'hold' });
      await server.call('present', { fill: 0x31 });
      const frame = await c.waitEvent('frame');
      expect(frame.inode).to.equal(adopted.inode);
      expect(frame.planes[0]).to.equal(0x31);
      await server.call('poke', { offset: 12, value: 0x99 });
      await eventually(async () => (await c.call('read', { offset: 12 })) === 0x99, 2000, 'the client sees the write');
    },
  );

  it(
    'an unsealed memfd reaches clients as a sealed copy, ' + 'with the reason, and every present refreshes it',
    async () => {
      const adopted = await server.call('adoptMemfd', { width: 64, height: 32, sealed: false });
      expect(adopted.sharing.how).to.equal('copy');
      expect(adopted.sharing.reason).to.match(/not sealed against shrinking .*get a sealed copy/);
      const c = await group.client();
      await server.call('present', { fill: 0x41 });
      const first = await c.waitEvent('frame', (f) => f.sequence === 1);
      expect(first.inode).to.not.equal(adopted.inode);
      expect(first.kind).to.equal('memfd');
      expect(first.planes[0]).to.equal(0x41);
      // One adopted buffer: the producer rewrites it once the client has let go of it (as a VM display does).
      await eventually(async () => (await server.call('stats')).holders === 0, 2000, 'the client released frame 1');
      await server.call('present', { fill: 0x42, damage: [{ x: 0, y: 0, width: 8, height: 8 }] });
      const second = await c.waitEvent('frame', (f) => f.sequence === 2);
      expect(second.planes[0]).to.equal(0x42);
      expect(second.damage).to.deep.equal([{ x: 0, y: 0, width: 8, height: 8 }]);
    },
  );
});
