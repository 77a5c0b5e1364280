/**
 * D-Bus marshalling (src/bridges/qemu-dbus/dbus/marshal.ts, signature.ts) as pure functions:
 * round trips of every type, exact bytes at the alignment edges, big-endian input, and malformed
 * input, which must always end in a SurfaceLinkError with the expected code and nothing else.
 * Fds are stand-in objects here (no native code).
 */
import { expect } from 'chai';
import type { NativeFd } from '../../src/native/index.js';
import {
  MAX_ARRAY_LENGTH,
  Variant,
  isValidBusName,
  isValidInterfaceName,
  isValidMemberName,
  isValidObjectPath,
  marshal,
  parseSignature,
  unmarshal,
} from '../../src/bridges/qemu-dbus/dbus/index.js';
import { SurfaceLinkError } from '../../src/errors.js';
import { expectCode, fakeFd } from '../fixtures/dbus/helpers.js';

function roundTrip(signature: string, values: unknown[], littleEndian = true): unknown[] {
  const { bytes, fds } = marshal(signature, values, { littleEndian });
  return unmarshal(signature, bytes, { littleEndian, fds });
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('D-Bus marshalling', () => {
  describe('round trips', () => {
    it('every basic type at its limits, both byte orders', () => {
      const fd = fakeFd();
      const cases: [string, unknown[]][] = [
        ['y', [0]],
        ['y', [255]],
        ['b', [true]],
        ['b', [false]],
        ['n', [-32768]],
        ['n', [32767]],
        ['q', [65535]],
        ['i', [-2147483648]],
        ['i', [2147483647]],
        ['u', [4294967295]],
        ['x', [-(2n ** 63n)]],
        ['x', [2n ** 63n - 1n]],
        ['t', [2n ** 64n - 1n]],
        ['d', [-1.5e300]],
        ['d', [Number.NaN]],
        ['d', [-0]],
        ['s', ['']],
        ['s', ['héllo wörld ✓ 🎉']],
        ['o', ['/']],
        ['o', ['/org/qemu/Display1/Console_0']],
        ['g', ['']],
        ['g', ['a{sv}(yt)aay']],
        ['h', [fd]],
      ];
      for (const le of [true, false])
        for (const [sig, values] of cases) {
          const out = roundTrip(sig, values, le);
          if (sig === 'h') expect(out[0], 'h decodes to the fd in the table').to.equal(fd);
          else if (Number.isNaN(values[0])) expect(Number.isNaN(out[0])).to.equal(true);
          else if (Object.is(values[0], -0)) expect(Object.is(out[0], -0), 'd keeps -0').to.equal(true);
          else expect(out, `${sig} ${String(values[0])} (le=${le})`).to.deep.equal(values);
        }
    });

    it('x and t accept safe-integer numbers and return bigints', () => {
      expect(roundTrip('xt', [-5, 7])).to.deep.equal([-5n, 7n]);
    });

    it('nested containers: arrays, structs, dicts (Map), variants in variants', () => {
      const value = [
        new Map<string, Variant>([
          ['Label', new Variant('s', 'VGA')],
          ['Size', new Variant('(uu)', [1280, 800])],
          ['Nested', new Variant('v', new Variant('av', [new Variant('y', 1), new Variant('as', ['a', 'b'])]))],
          ['Dict', new Variant('a{ua{sx}}', new Map([[7, new Map([['k', -1n]])]]))],
        ]),
        [
          [1, new Map([[2, new Variant('b', true)]])],
          [3, new Map()],
        ],
        [[], [[1, 2]], [[3]]],
        [Buffer.from([1, 2]), Buffer.alloc(0)],
      ];
      const out = roundTrip('a{sv}a(ia{yv})aaauaay', value);
      expect(out).to.deep.equal(value);
      expect(out[0]).to.be.instanceOf(Map);
      expect((out[0] as Map<string, Variant>).get('Nested')).to.be.instanceOf(Variant);
    });

    it('plain objects marshal as string-keyed dicts', () => {
      const { bytes } = marshal('a{sv}', [{ A: new Variant('u', 1), B: new Variant('s', 'x') }]);
      const [map] = unmarshal('a{sv}', bytes) as [Map<string, Variant>];
      expect([...map.keys()]).to.deep.equal(['A', 'B']);
      expect(map.get('A')).to.deep.equal(new Variant('u', 1));
    });

    it('ay decodes as a view into the input (no copy) and accepts any Uint8Array', () => {
      const { bytes } = marshal('uay', [9, new Uint8Array([5, 6, 7])]);
      const [, data] = unmarshal('uay', bytes) as [number, Buffer];
      expect(Buffer.isBuffer(data)).to.equal(true);
      expect(data.buffer).to.equal(bytes.buffer);
      expect(data.byteOffset).to.equal(bytes.byteOffset + 8);
      bytes[8] = 42;
      expect(data[0], 'the view sees changes to the message buffer').to.equal(42);
    });

    it('h values share indices: the same fd twice is one entry; a given fd table keeps its order', () => {
      const a = fakeFd('a');
      const b = fakeFd('b');
      const { bytes, fds } = marshal('hhah', [a, b, [b, a]], { fds: [b] });
      expect(fds).to.deep.equal([b, a]);
      expect(hex(bytes)).to.equal('01000000' + '00000000' + '08000000' + '00000000' + '01000000');
      const out = unmarshal('hhah', bytes, { fds }) as [NativeFd, NativeFd, NativeFd[]];
      expect(out[0]).to.equal(a);
      expect(out[2][0]).to.equal(b);
    });
  });

  describe('alignment', () => {
    it('(yt): the struct starts at 8, t after 7 bytes of padding', () => {
      const { bytes } = marshal('(yt)', [[1, 2n]]);
      expect(hex(bytes)).to.equal('01' + '00'.repeat(7) + '0200000000000000');
    });

    it('y(yt): padding before the struct too', () => {
      const { bytes } = marshal('y(yt)', [9, [1, 2n]]);
      expect(hex(bytes)).to.equal('09' + '00'.repeat(7) + '01' + '00'.repeat(7) + '0200000000000000');
    });

    it('an empty array of 8-aligned elements is still padded to 8 after its length', () => {
      for (const sig of ['yat', 'ya(yy)', 'ya{yv}', 'yad']) {
        const { bytes } = marshal(sig, [7, sig === 'ya{yv}' ? new Map() : []]);
        expect(hex(bytes), sig).to.equal('07000000' + '00000000');
        expect(unmarshal(sig, bytes), sig).to.deep.equal([7, sig === 'ya{yv}' ? new Map() : []]);
      }
      // and the length excludes that padding: one element
      const { bytes } = marshal('yat', [7, [3n]]);
      expect(hex(bytes)).to.equal('07000000' + '08000000' + '0300000000000000');
    });

    it('a(yv): each struct at 8, variant values aligned inside', () => {
      const { bytes } = marshal('a(yv)', [
        [
          [1, new Variant('t', 5n)],
          [2, new Variant('y', 6)],
        ],
      ]);
      // len | pad to 8 | (y=1, sig "t", pad, t=5) | (y=2, sig "y", y=6)
      expect(hex(bytes)).to.equal(
        '15000000' + '00000000' + '01' + '017400' + '00000000' + '0500000000000000' + '02' + '017900' + '06',
      );
      expect(unmarshal('a(yv)', bytes)).to.deep.equal([
        [
          [1, new Variant('t', 5n)],
          [2, new Variant('y', 6)],
        ],
      ]);
    });

    it('n, i, d after a byte are aligned to 2, 4, 8', () => {
      expect(hex(marshal('yn', [1, -2]).bytes)).to.equal('0100feff');
      expect(hex(marshal('yi', [1, 2]).bytes)).to.equal('01000000' + '02000000');
      expect(hex(marshal('yd', [1, 1]).bytes)).to.equal('01' + '00'.repeat(7) + '000000000000f03f');
    });

    it('strings: length, bytes, NUL; signatures: byte length, bytes, NUL', () => {
      expect(hex(marshal('sg', ['ab', 'ay']).bytes)).to.equal('02000000' + '616200' + '02617900');
    });
  });

  describe('big-endian input', () => {
    it('decodes hand-written big-endian bytes', () => {
      // (yt) = (1, 0x0102030405060708), u = 0xdeadbeef, s = "hi", n = -2, ay = [9, 8]
      const bytes = Buffer.from(
        '01' +
          '00'.repeat(7) +
          '0102030405060708' +
          'deadbeef' +
          '00000002' +
          '686900' +
          '00' +
          'fffe' +
          '0000' +
          '00000002' +
          '0908',
        'hex',
      );
      const out = unmarshal('(yt)usnay', bytes, { littleEndian: false });
      expect(out).to.deep.equal([[1, 0x0102030405060708n], 0xdeadbeef, 'hi', -2, Buffer.from([9, 8])]);
    });

    it('the same bytes read as little-endian are different values (the flag matters)', () => {
      const { bytes } = marshal('u', [1], { littleEndian: false });
      expect(unmarshal('u', bytes, { littleEndian: true })).to.deep.equal([0x01000000]);
    });
  });

  describe('signatures', () => {
    it('accepts valid ones', () => {
      for (const sig of ['', 'y', 'a{sv}', 'a{s(ia{yv})}', '(((y)))', 'aaaay', 'hav', 'a'.repeat(32) + 'y'])
        expect(() => parseSignature(sig), sig).not.to.throw();
    });

    it('refuses invalid ones with E_MALFORMED (peer) or E_INVALID_ARGUMENT (caller)', () => {
      const bad = [
        'a',
        '(',
        ')',
        '()',
        '(y',
        '{sv}',
        'a{vs}',
        'a{s}',
        'a{syy}',
        'z',
        'a{(y)v}',
        'a'.repeat(33) + 'y',
        '('.repeat(33) + 'y' + ')'.repeat(33),
        'y'.repeat(256),
      ];
      for (const sig of bad) {
        expectCode(() => parseSignature(sig), 'E_MALFORMED');
        expectCode(() => marshal(sig, []), 'E_INVALID_ARGUMENT');
      }
    });

    it('a variant needs exactly one complete type', () => {
      expectCode(() => new Variant('yy', 1), 'E_INVALID_ARGUMENT');
      expectCode(() => new Variant('', 1), 'E_INVALID_ARGUMENT');
    });

    it('name rules: object paths, interfaces, members, bus names', () => {
      expect(['/', '/a', '/a_b/C1'].every(isValidObjectPath)).to.equal(true);
      expect(['', 'a', '/a/', '//a', '/a-b', '/a/./b'].some(isValidObjectPath)).to.equal(false);
      expect(isValidInterfaceName('org.qemu.Display1.Listener')).to.equal(true);
      expect(
        ['org', 'org.', '.org.x', 'org.1x', 'org..x', 'a'.repeat(128) + '.' + 'b'.repeat(128)].some(
          isValidInterfaceName,
        ),
      ).to.equal(false);
      expect(isValidMemberName('ScanoutDMABUF')).to.equal(true);
      expect(['', '1a', 'a.b', 'a-b'].some(isValidMemberName)).to.equal(false);
      expect([':1.42', 'org.qemu', 'a-b.c_d'].every(isValidBusName)).to.equal(true);
      expect(['org', ':1', 'org.1x', ''].some(isValidBusName)).to.equal(false);
    });
  });

  describe('values that do not fit the signature', () => {
    it('are E_INVALID_ARGUMENT naming the type', () => {
      const cases: [string, unknown][] = [
        ['y', 256],
        ['y', -1],
        ['y', 1.5],
        ['b', 1],
        ['n', 40000],
        ['q', -1],
        ['i', 2 ** 31],
        ['u', -1],
        ['x', 2n ** 63n],
        ['t', -1n],
        ['t', 2 ** 60],
        ['d', '1'],
        ['s', 5],
        ['s', 'a\0b'],
        ['o', 'no/slash'],
        ['g', 'a{'],
        ['h', 3],
        ['h', Object.assign(fakeFd(), { closed: true })],
        ['v', 'not a variant'],
        ['au', 'abc'],
        ['au', [1, 'x']],
        ['(uu)', [1]],
        ['a{uv}', { a: new Variant('y', 1) }],
        ['v', new Variant('u', 'x')],
      ];
      for (const [sig, value] of cases)
        expectCode(() => marshal(sig, [value]), 'E_INVALID_ARGUMENT', sig === 'g' ? /signature/ : /'/);
    });

    it('the number of values must match the signature', () => {
      expectCode(() => marshal('uu', [1]), 'E_INVALID_ARGUMENT');
    });

    it('variants nested deeper than 64 are refused when writing too', () => {
      let v: unknown = 1;
      for (let i = 0; i < 70; i++) v = new Variant(i === 0 ? 'y' : 'v', v);
      expectCode(() => marshal('v', [v]), 'E_INVALID_ARGUMENT', /64/);
    });
  });

  describe('malformed input', () => {
    it('every truncation of a valid encoding is E_MALFORMED', () => {
      const { bytes } = marshal('(yt)sa{sv}ayg', [
        [1, 2n],
        'text',
        new Map([['k', new Variant('as', ['x', 'y'])]]),
        Buffer.from([1, 2, 3]),
        'a{sv}',
      ]);
      for (let n = 0; n < bytes.length; n++)
        expectCode(() => unmarshal('(yt)sa{sv}ayg', bytes.subarray(0, n)), 'E_MALFORMED');
    });

    it('trailing bytes after the values are E_MALFORMED', () => {
      expectCode(() => unmarshal('y', Buffer.from([1, 0])), 'E_MALFORMED', /after/);
    });

    it('an invalid signature given for the data is E_MALFORMED', () => {
      expectCode(() => unmarshal('a{vs}', Buffer.alloc(8)), 'E_MALFORMED');
    });

    it('an array length that lies: beyond the data, or cutting an element in half', () => {
      // au claiming 16 bytes with 8 present
      expectCode(() => unmarshal('au', Buffer.from('10000000' + '01000000' + '02000000', 'hex')), 'E_MALFORMED');
      // a(uu) claiming 4 bytes: the element (8 bytes) overruns it
      expectCode(
        () => unmarshal('a(uu)u', Buffer.from('04000000' + '00000000' + '01000000' + '02000000', 'hex')),
        'E_MALFORMED',
        /overrun/,
      );
    });

    it('a huge declared array length is E_TOO_LARGE, checked before anything else', () => {
      expectCode(() => unmarshal('ay', Buffer.from('ffffff7f', 'hex')), 'E_TOO_LARGE');
      expectCode(
        () => unmarshal('ay', Buffer.from((MAX_ARRAY_LENGTH + 1).toString(16).padStart(8, '0'), 'hex').reverse()),
        'E_TOO_LARGE',
      );
      // exactly the limit is only "beyond the data"
      const atLimit = Buffer.alloc(4);
      atLimit.writeUInt32LE(MAX_ARRAY_LENGTH);
      expectCode(() => unmarshal('ay', atLimit), 'E_MALFORMED', /beyond/);
    });

    it('a huge string length is E_MALFORMED without allocating', () => {
      expectCode(() => unmarshal('s', Buffer.from('ffffffff' + '6100', 'hex')), 'E_MALFORMED', /beyond/);
    });

    it('invalid UTF-8, NUL inside, a missing terminator', () => {
      expectCode(() => unmarshal('s', Buffer.from('02000000' + 'c328' + '00', 'hex')), 'E_MALFORMED', /UTF-8/);
      expectCode(() => unmarshal('s', Buffer.from('03000000' + 'eda080' + '00', 'hex')), 'E_MALFORMED', /UTF-8/);
      expectCode(() => unmarshal('s', Buffer.from('03000000' + '610062' + '00', 'hex')), 'E_MALFORMED', /NUL/);
      expectCode(() => unmarshal('s', Buffer.from('01000000' + '61' + '01', 'hex')), 'E_MALFORMED', /NUL-terminated/);
      expectCode(() => unmarshal('g', Buffer.from('01' + '79' + '01', 'hex')), 'E_MALFORMED', /NUL-terminated/);
    });

    it('invalid object paths and signatures inside the data', () => {
      expectCode(() => unmarshal('o', Buffer.from('02000000' + '2f2f' + '00', 'hex')), 'E_MALFORMED', /object path/);
      expectCode(() => unmarshal('g', Buffer.from('01' + '7a' + '00', 'hex')), 'E_MALFORMED', /signature/);
      expectCode(
        () => unmarshal('v', Buffer.from('02' + '7979' + '00' + '0101', 'hex')),
        'E_MALFORMED',
        /one complete/,
      );
    });

    it('a boolean other than 0 or 1; non-zero padding', () => {
      expectCode(() => unmarshal('b', Buffer.from('02000000', 'hex')), 'E_MALFORMED', /boolean/);
      expectCode(() => unmarshal('yu', Buffer.from('01' + '000100' + '05000000', 'hex')), 'E_MALFORMED', /padding/);
    });

    it('an h index beyond the fds that came with the message', () => {
      expectCode(() => unmarshal('h', Buffer.from('00000000', 'hex')), 'E_MALFORMED', /file descriptor/);
      expectCode(() => unmarshal('h', Buffer.from('01000000', 'hex'), { fds: [fakeFd()] }), 'E_MALFORMED');
    });

    it('depth bombs: 65 nested variants, arrays within variants beyond 32', () => {
      // v containing v containing ... : each level is 01 76 00 ('v'), the innermost a byte.
      const variants = (n: number): Buffer =>
        Buffer.concat([Buffer.from('017600'.repeat(n - 1), 'hex'), Buffer.from('01790007', 'hex')]);
      expect(() => unmarshal('v', variants(64))).not.to.throw();
      expectCode(() => unmarshal('v', variants(65)), 'E_MALFORMED', /64/);
      // 32 arrays in the signature, then a variant holding one more array: 33 nested arrays
      const sig = 'a'.repeat(32) + 'v';
      let inner = Buffer.from('02' + '6179' + '00' + '00000000', 'hex'); // v = ay []
      for (let i = 0; i < 32; i++) {
        const len = Buffer.alloc(4);
        len.writeUInt32LE(inner.length);
        inner = Buffer.concat([len, inner]);
      }
      // the innermost v starts at offset 128 (4-aligned), so no padding is needed anywhere
      expectCode(() => unmarshal(sig, inner), 'E_MALFORMED', /32 nested arrays/);
    });

    it('random corruption of a valid body only ever gives E_MALFORMED or E_TOO_LARGE', () => {
      const sig = 'a{sv}(yt)aya(ia{yv})sogbndx';
      const { bytes } = marshal(sig, [
        new Map<string, Variant>([
          ['a', new Variant('a(ss)', [['x', 'y']])],
          ['b', new Variant('v', new Variant('d', 1.5))],
        ]),
        [1, 2n],
        Buffer.from('hello'),
        [[-1, new Map([[1, new Variant('s', 'z')]])]],
        'str',
        '/o/p',
        'a{sv}',
        true,
        -3,
        2.5,
        -9n,
      ]);
      let seed = 12345;
      const rand = (n: number): number => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed % n;
      };
      const codes = new Set<string>();
      for (let i = 0; i < 3000; i++) {
        const copy = Buffer.from(bytes);
        for (let k = 0, m = 1 + rand(4); k < m; k++) copy[rand(copy.length)] = rand(256);
        try {
          unmarshal(sig, copy.subarray(0, rand(8) === 0 ? rand(copy.length) : copy.length));
        } catch (error) {
          expect(error, String(error)).to.be.instanceOf(SurfaceLinkError);
          codes.add((error as SurfaceLinkError).code);
        }
      }
      expect([...codes].sort()).to.satisfy((c: string[]) => c.every((x) => x === 'E_MALFORMED' || x === 'E_TOO_LARGE'));
      expect(codes.has('E_MALFORMED')).to.equal(true);
    });
  });
});
