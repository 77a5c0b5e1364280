/**
 * D-Bus messages and framing (src/bridges/qemu-dbus/dbus/message.ts) without sockets: header
 * encoding, both byte orders, required fields, UNIX_FDS and the fd FIFO, messages cut at every
 * chunk boundary, and malformed or lying headers (always a SurfaceLinkError, fds closed).
 */
import { expect } from 'chai';
import {
  MAX_MESSAGE_SIZE,
  MessageFlags,
  MessageFramer,
  MessageType,
  Variant,
  decodeMessage,
  encodeMessage,
  marshal,
  messageLength,
  type DBusMessage,
  type OutgoingMessage,
} from '../../src/bridges/qemu-dbus/dbus/index.js';
import { SurfaceLinkError } from '../../src/errors.js';
import { expectCode, fakeFd } from '../fixtures/dbus/helpers.js';

const call: OutgoingMessage = {
  type: MessageType.METHOD_CALL,
  path: '/org/qemu/Display1/Listener',
  interface: 'org.qemu.Display1.Listener',
  member: 'Update',
  signature: 'iiiiuuay',
  body: [0, 16, 1280, 64, 5120, 0x20020888, Buffer.alloc(100, 7)],
  flags: MessageFlags.NO_REPLY_EXPECTED,
};

function frameAll(chunks: Uint8Array[], fdsPerChunk: ReturnType<typeof fakeFd>[][] = []): DBusMessage[] {
  const out: DBusMessage[] = [];
  const framer = new MessageFramer((m) => out.push(m));
  chunks.forEach((c, i) => {
    framer.pushFds(fdsPerChunk[i]);
    framer.push(c);
  });
  expect(framer.idle, 'no partial message left').to.equal(true);
  return out;
}

/** A hand-built little-endian message: fields given as [code, signature, value] (values marshalled here). */
function rawMessage(
  type: number,
  fields: [number, string, unknown][],
  body: Buffer = Buffer.alloc(0),
  options: { serial?: number; version?: number; endian?: number } = {},
): Buffer {
  // The fields array sits at offset 12, after the serial at 8: marshalled after a u32 from offset 0, the
  // array is at 4 with the same alignment (8 bytes earlier), so its bytes are the message's.
  const fieldBytes = marshal('ua(yv)', [0, fields.map(([c, s, v]) => [c, new Variant(s, v)])]).bytes.subarray(4);
  const head = Buffer.alloc(12);
  head[0] = options.endian ?? 0x6c;
  head[1] = type;
  head[3] = options.version ?? 1;
  head.writeUInt32LE(body.length, 4);
  head.writeUInt32LE(options.serial ?? 1, 8);
  const unpadded = Buffer.concat([head, fieldBytes]);
  const pad = Buffer.alloc((8 - (unpadded.length % 8)) % 8);
  return Buffer.concat([unpadded, pad, body]);
}

describe('D-Bus messages', () => {
  describe('encode and decode', () => {
    it('a method call round trips, header fields and body, ay as a view into the message', () => {
      const { bytes, fds } = encodeMessage(call, 7);
      expect(fds).to.deep.equal([]);
      expect(bytes[0]).to.equal(0x6c);
      expect(messageLength(bytes)).to.equal(bytes.length);
      const m = decodeMessage(Buffer.from(bytes))!;
      expect(m).to.include({
        type: 1,
        flags: 1,
        serial: 7,
        path: call.path,
        interface: call.interface,
        member: 'Update',
        signature: 'iiiiuuay',
      });
      expect(m.body.slice(0, 6)).to.deep.equal([0, 16, 1280, 64, 5120, 0x20020888]);
      expect((m.body[6] as Buffer).equals(Buffer.alloc(100, 7))).to.equal(true);
    });

    it('the body starts 8-aligned after the header fields', () => {
      const { bytes } = encodeMessage({ type: MessageType.SIGNAL, path: '/a', interface: 'a.b', member: 'C' }, 1);
      expect(bytes.length % 8, 'no body: the padded header only').to.equal(0);
      const withBody = encodeMessage({ ...call, signature: 't', body: [1n] }, 1).bytes;
      expect(withBody.readBigUInt64LE(withBody.length - 8)).to.equal(1n);
      expect((withBody.length - 8) % 8).to.equal(0);
    });

    it('big-endian messages decode (the byte-order mark decides)', () => {
      const { bytes } = encodeMessage(
        { type: MessageType.ERROR, errorName: 'org.x.Error.Y', replySerial: 3, signature: 'su', body: ['why', 9] },
        0x01020304,
        { littleEndian: false },
      );
      expect(bytes[0]).to.equal(0x42);
      expect(bytes.readUInt32BE(8)).to.equal(0x01020304);
      const m = decodeMessage(Buffer.from(bytes))!;
      expect(m).to.include({ type: 3, serial: 0x01020304, errorName: 'org.x.Error.Y', replySerial: 3 });
      expect(m.body).to.deep.equal(['why', 9]);
    });

    it('UNIX_FDS counts the fds, and decoding takes that many from the FIFO', () => {
      const a = fakeFd('a');
      const b = fakeFd('b');
      const { bytes, fds } = encodeMessage(
        { type: MessageType.METHOD_RETURN, replySerial: 1, signature: 'hah', body: [a, [b, a]] },
        2,
      );
      expect(fds).to.deep.equal([a, b]);
      const x = fakeFd('x');
      const y = fakeFd('y');
      const z = fakeFd('z');
      const queue = [x, y, z];
      const m = decodeMessage(Buffer.from(bytes), queue)!;
      expect(m.fds).to.deep.equal([x, y]);
      expect(m.body).to.deep.equal([x, [y, x]]);
      expect(queue).to.deep.equal([z]);
    });

    it('a message claiming more fds than arrived is E_MALFORMED, and the fds are left for the framer to close', () => {
      const { bytes } = encodeMessage(
        { type: MessageType.METHOD_CALL, path: '/', member: 'M', signature: 'hh', body: [fakeFd(), fakeFd()] },
        2,
      );
      const only = fakeFd('only');
      const framer = new MessageFramer(() => expect.fail('no message'));
      framer.pushFds([only]);
      expectCode(() => framer.push(bytes), 'E_MALFORMED', /claims 2 file descriptors but 1 arrived/);
      expect(only.closed, 'the framer closed the fd on error').to.equal(true);
    });

    it('a body that does not match its signature closes the fds the message took', () => {
      const a = fakeFd('a');
      const good = encodeMessage(
        { type: MessageType.METHOD_CALL, path: '/', member: 'M', signature: 'hu', body: [a, 1] },
        1,
      ).bytes;
      const bad = Buffer.from(good);
      bad.writeUInt32LE(5, bad.length - 8); // the h index: 5, with one fd
      const mine = fakeFd('mine');
      expectCode(() => decodeMessage(bad, [mine]), 'E_MALFORMED', /file descriptor index 5/);
      expect(mine.closed).to.equal(true);
    });

    it('refuses to encode messages without their required fields, or with invalid names', () => {
      const cases: OutgoingMessage[] = [
        { type: MessageType.METHOD_CALL, member: 'M' } as OutgoingMessage,
        { type: MessageType.METHOD_CALL, path: '/' } as OutgoingMessage,
        { type: MessageType.SIGNAL, path: '/', member: 'M' } as OutgoingMessage,
        { type: MessageType.ERROR, replySerial: 1 },
        { type: MessageType.METHOD_RETURN },
        { type: MessageType.METHOD_CALL, path: 'x', member: 'M' },
        { type: MessageType.METHOD_CALL, path: '/', member: 'M.N' },
        { type: MessageType.METHOD_CALL, path: '/', member: 'M', interface: 'nodot' },
        { type: MessageType.METHOD_CALL, path: '/', member: 'M', destination: 'bad' },
        { type: MessageType.METHOD_CALL, path: '/', member: 'M', signature: 'u', body: [] },
        { type: 9, path: '/', member: 'M' },
      ];
      for (const m of cases) expectCode(() => encodeMessage(m, 1), 'E_INVALID_ARGUMENT');
      expectCode(() => encodeMessage(call, 0), 'E_INVALID_ARGUMENT');
    });

    it('refuses to encode beyond the size limit (E_TOO_LARGE)', () => {
      expectCode(
        () => encodeMessage({ ...call, signature: 'ay', body: [Buffer.alloc(2000)] }, 1, { maxMessageBytes: 1024 }),
        'E_TOO_LARGE',
      );
    });
  });

  describe('decoding refuses', () => {
    it('messages missing a required header field', () => {
      const cases: [number, [number, string, unknown][], RegExp][] = [
        [MessageType.METHOD_CALL, [[3, 's', 'M']], /path/],
        [MessageType.METHOD_CALL, [[1, 'o', '/']], /member/],
        [MessageType.METHOD_RETURN, [], /replySerial/],
        [MessageType.ERROR, [[5, 'u', 1]], /errorName/],
        [
          MessageType.SIGNAL,
          [
            [1, 'o', '/'],
            [3, 's', 'M'],
          ],
          /interface/,
        ],
      ];
      for (const [type, fields, why] of cases)
        expectCode(() => decodeMessage(rawMessage(type, fields)), 'E_MALFORMED', why);
    });

    it('header fields of the wrong type, twice, or with invalid names; serial 0; type 0; version 2', () => {
      const ok: [number, string, unknown][] = [
        [1, 'o', '/'],
        [3, 's', 'M'],
      ];
      expect(decodeMessage(rawMessage(1, ok))).to.include({ path: '/', member: 'M' });
      expectCode(() => decodeMessage(rawMessage(1, [[1, 's', '/'], ok[1]])), 'E_MALFORMED', /type 's', not 'o'/);
      expectCode(() => decodeMessage(rawMessage(1, [...ok, [3, 's', 'N']])), 'E_MALFORMED', /twice/);
      expectCode(() => decodeMessage(rawMessage(1, [...ok, [2, 's', 'nodot']])), 'E_MALFORMED', /interface/);
      expectCode(() => decodeMessage(rawMessage(1, [...ok, [6, 's', 'x']])), 'E_MALFORMED', /destination/);
      expectCode(() => decodeMessage(rawMessage(1, ok, undefined, { serial: 0 })), 'E_MALFORMED', /serial 0/);
      expectCode(() => decodeMessage(rawMessage(0, ok)), 'E_MALFORMED', /INVALID/);
      expectCode(() => decodeMessage(rawMessage(1, ok, undefined, { version: 2 })), 'E_MALFORMED', /version/);
      expectCode(() => decodeMessage(rawMessage(1, ok, undefined, { endian: 0x78 })), 'E_MALFORMED', /byte-order/);
    });

    it('a body without a SIGNATURE field, or bytes left after the body', () => {
      const ok: [number, string, unknown][] = [
        [1, 'o', '/'],
        [3, 's', 'M'],
      ];
      expectCode(() => decodeMessage(rawMessage(1, ok, Buffer.from([1]))), 'E_MALFORMED', /after the body/);
      expectCode(
        () => decodeMessage(rawMessage(1, [...ok, [8, 'g', 'y']], Buffer.from([1, 2]))),
        'E_MALFORMED',
        /after the body/,
      );
    });

    it('ignores unknown header fields, and messages of unknown types (closing their fds)', () => {
      const fields: [number, string, unknown][] = [
        [1, 'o', '/'],
        [3, 's', 'M'],
        [200, 'as', ['x']],
      ];
      expect(decodeMessage(rawMessage(1, fields))).to.include({ member: 'M' });
      const fd = fakeFd();
      const queue = [fd];
      expect(decodeMessage(rawMessage(9, [[9, 'u', 1]]), queue)).to.equal(null);
      expect(fd.closed).to.equal(true);
      expect(queue).to.deep.equal([]);
    });

    it('a declared size over 128 MiB, from the first 16 bytes alone (E_TOO_LARGE)', () => {
      const head = Buffer.alloc(16);
      head.write('l', 0, 'latin1');
      head[1] = 1;
      head[3] = 1;
      head.writeUInt32LE(MAX_MESSAGE_SIZE - 16 + 1, 4); // body length
      head.writeUInt32LE(1, 8);
      head.writeUInt32LE(0, 12);
      expectCode(() => messageLength(head), 'E_TOO_LARGE', /134217729/);
      head.writeUInt32LE(MAX_MESSAGE_SIZE - 16, 4);
      expect(messageLength(head)).to.equal(MAX_MESSAGE_SIZE);
      head.writeUInt32LE(0xffffffff, 4);
      head.writeUInt32LE(0xffffffff, 12);
      expectCode(() => messageLength(head), 'E_TOO_LARGE');
      const framer = new MessageFramer(() => expect.fail('no message'));
      expectCode(() => framer.push(head), 'E_TOO_LARGE');
    });

    it('random corruption of valid messages only ever gives E_MALFORMED / E_TOO_LARGE, never a crash', () => {
      const samples = [
        encodeMessage(call, 5).bytes,
        encodeMessage(
          {
            type: MessageType.METHOD_RETURN,
            replySerial: 9,
            destination: ':1.5',
            signature: 'a{sv}',
            body: [new Map([['Interfaces', new Variant('as', ['org.qemu.Display1.Listener.Unix.Map'])]])],
          },
          6,
        ).bytes,
      ];
      let seed = 99;
      const rand = (n: number): number => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed % n;
      };
      for (let i = 0; i < 4000; i++) {
        const copy = Buffer.from(samples[i % 2]);
        for (let k = 0, m = 1 + rand(3); k < m; k++) copy[rand(Math.min(copy.length, 120))] = rand(256);
        const framer = new MessageFramer(() => {});
        try {
          framer.push(copy);
        } catch (error) {
          expect(error, String(error)).to.be.instanceOf(SurfaceLinkError);
          expect(['E_MALFORMED', 'E_TOO_LARGE']).to.include((error as SurfaceLinkError).code);
        }
      }
    });
  });

  describe('MessageFramer', () => {
    const messages = [
      encodeMessage(call, 1).bytes,
      encodeMessage(
        { type: MessageType.SIGNAL, path: '/s', interface: 'a.b', member: 'S', signature: 's', body: ['x'] },
        2,
      ).bytes,
      encodeMessage({ type: MessageType.METHOD_RETURN, replySerial: 4 }, 3).bytes,
      encodeMessage({ ...call, signature: 'ay', body: [Buffer.alloc(300_000, 9)] }, 4).bytes,
    ];
    const stream = Buffer.concat(messages);

    it('many messages in one chunk', () => {
      expect(frameAll([stream]).map((m) => m.serial)).to.deep.equal([1, 2, 3, 4]);
    });

    it('one byte at a time, and at every split point of the small messages', () => {
      const small = Buffer.concat(messages.slice(0, 3));
      const bytewise = frameAll([...small].map((b) => Uint8Array.of(b)));
      expect(bytewise.map((m) => m.serial)).to.deep.equal([1, 2, 3]);
      for (let cut = 1; cut < small.length; cut++) {
        const got = frameAll([small.subarray(0, cut), small.subarray(cut)]);
        expect(
          got.map((m) => m.serial),
          `cut at ${cut}`,
        ).to.deep.equal([1, 2, 3]);
        expect(got[1].body).to.deep.equal(['x']);
      }
    });

    it('a large message over many chunks: one buffer per message, ay a view into it, chunk reuse is safe', () => {
      const chunk = Buffer.alloc(65536);
      const out: DBusMessage[] = [];
      const framer = new MessageFramer((m) => out.push(m));
      for (let off = 0; off < stream.length; off += chunk.length) {
        const n = stream.copy(chunk, 0, off, off + chunk.length);
        framer.push(chunk.subarray(0, n));
        chunk.fill(0xee); // the framer must have copied what it keeps
      }
      expect(out.map((m) => m.serial)).to.deep.equal([1, 2, 3, 4]);
      const pixels = out[3].body[0] as Buffer;
      expect(pixels.length).to.equal(300_000);
      expect(pixels.every((b) => b === 9)).to.equal(true);
      expect(pixels.buffer.byteLength, 'the view shares the message buffer').to.be.at.least(300_000);
      expect(pixels.byteOffset).to.be.greaterThan(0);
    });

    it('gives each message the fds its UNIX_FDS claims, in order; closes extras at a message boundary', () => {
      const a = fakeFd('a');
      const b = fakeFd('b');
      const m1 = encodeMessage(
        { type: MessageType.METHOD_CALL, path: '/', member: 'A', signature: 'h', body: [a] },
        1,
      ).bytes;
      const m2 = encodeMessage({ type: MessageType.METHOD_CALL, path: '/', member: 'B' }, 2).bytes;
      const m3 = encodeMessage(
        { type: MessageType.METHOD_CALL, path: '/', member: 'C', signature: 'h', body: [b] },
        3,
      ).bytes;
      const r1 = fakeFd('r1');
      const r3 = fakeFd('r3');
      const extra = fakeFd('extra');
      // r1 comes with m1's first byte; r3 with the chunk holding m3's first byte (m2 + the start of m3)
      const all = Buffer.concat([m1, m2, m3]);
      const cut = m1.length + m2.length + 5;
      const got = frameAll(
        [all.subarray(0, 10), all.subarray(10, cut), all.subarray(cut), Buffer.alloc(0)],
        [[r1], [r3], [], [extra]],
      );
      expect(got.map((m) => m.member)).to.deep.equal(['A', 'B', 'C']);
      expect(got[0].fds).to.deep.equal([r1]);
      expect(got[1].fds).to.deep.equal([]);
      expect(got[2].fds).to.deep.equal([r3]);
      expect(got[2].body[0]).to.equal(r3);
      expect([r1.closed, r3.closed], 'given to their messages, not closed').to.deep.equal([false, false]);
      expect(extra.closed, 'an fd no message claims is closed').to.equal(true);
    });

    it('dispose() closes queued fds; after an error the framer takes nothing more', () => {
      const fd = fakeFd();
      const framer = new MessageFramer(() => {});
      framer.pushFds([fd]);
      framer.push(messages[0].subarray(0, 3));
      expect(fd.closed, 'kept while its message may still claim it').to.equal(false);
      framer.dispose();
      expect(fd.closed).to.equal(true);
      const late = fakeFd();
      framer.pushFds([late]);
      expect(late.closed).to.equal(true);
    });

    it('more queued fds than the limit is E_MALFORMED', () => {
      const framer = new MessageFramer(() => {}, { maxQueuedFds: 4 });
      framer.push(messages[0].subarray(0, 3));
      const fds = [1, 2, 3, 4, 5].map((i) => fakeFd(String(i)));
      expectCode(() => framer.pushFds(fds), 'E_MALFORMED', /file descriptors/);
      expect(fds.every((f) => f.closed)).to.equal(true);
    });

    it("release(): a large message's buffer is reused by a later message that fits; views then alias", () => {
      const big = (fill: number, size: number): Buffer =>
        encodeMessage({ ...call, signature: 'ay', body: [Buffer.alloc(size, fill)] }, 1).bytes;
      const out: DBusMessage[] = [];
      const framer = new MessageFramer((m) => out.push(m));
      framer.push(big(1, 200_000));
      framer.push(big(2, 200_000));
      const [a, b] = out.map((m) => m.body[0] as Buffer);
      expect(a.buffer, 'without release: separate buffers').not.to.equal(b.buffer);
      framer.release(out[0]);
      framer.release(out[0]); // a second release is ignored
      framer.push(big(3, 150_000));
      const c = out[2].body[0] as Buffer;
      expect(c.buffer, 'the released buffer is reused').to.equal(a.buffer);
      expect(c.every((x) => x === 3)).to.equal(true);
      expect(a[0], "the released message's view now shows the new bytes").to.equal(3);
      framer.push(big(4, 150_000));
      expect((out[3].body[0] as Buffer).buffer, 'released once, used once').not.to.equal(a.buffer);
      // too small a message for the pool, and a buffer more than twice the size needed, are not reused
      framer.release(out[1]);
      framer.push(big(5, 50_000));
      expect((out[4].body[0] as Buffer).buffer).not.to.equal(b.buffer);
      framer.push(big(6, 90_000));
      expect((out[5].body[0] as Buffer).buffer, '200 KB buffer for a 90 KB message: too wasteful').not.to.equal(
        b.buffer,
      );
      framer.push(big(7, 120_000));
      expect((out[6].body[0] as Buffer).buffer).to.equal(b.buffer);
    });

    it('a message may close the framer from its callback (the rest of the chunk is dropped)', () => {
      let count = 0;
      const framer: MessageFramer = new MessageFramer(() => {
        count++;
        framer.dispose();
      });
      framer.push(stream);
      expect(count).to.equal(1);
    });
  });
});
