'use strict';
// Smoke test of the addon's Linux dma-buf / DRM (vgem) / sync_file primitives.
//
//   bash scripts/vm/run.sh -- node test/vm/native-dmabuf.smoke.js   (real devices, in the VM)
//   node test/vm/native-dmabuf.smoke.js                             (host: devices absent -> clean errors)
//
// Plain Node, no test framework: prints `ok <name>` / `FAIL <name>: why` / `skip <name>: why`
// and exits 1 if anything failed. Build the addon first (npx cmake-js compile).
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { Worker } = require('node:worker_threads');

const ADDON = path.join(__dirname, '../../build/Release/surfacelink.node');
const addon = require(ADDON);
const { dmabuf, drm, fence } = addon;

// ---------------------------------------------------------------------------------------
// Child modes (spawned by the ref tests below)
if (process.argv[2] === '--child-wait') {
  const ref = process.argv[3] === 'ref';
  const card = drm.open('/dev/dri/card0');
  const { handle } = drm.createDumb(card, 16, 16, 32);
  const buf = drm.primeExport(card, handle);
  drm.vgemFenceAttach(card, handle, true);
  const sf = dmabuf.exportSyncFile(buf, 'write');
  const t0 = Date.now();
  fence.wait(sf, (err) => console.log(`callback ${err} after ${Date.now() - t0} ms`), { ref });
  sf.close();
  console.log('waiting');
  return;
}
if (process.argv[2] === '--child-sync-block') {
  // DMA_BUF_IOCTL_SYNC start waits (in the kernel, blocking this thread) for unsignalled fences.
  const card = drm.open('/dev/dri/card0');
  const { handle } = drm.createDumb(card, 16, 16, 32);
  const buf = drm.primeExport(card, handle);
  drm.vgemFenceAttach(card, handle, true);
  const t0 = Date.now();
  dmabuf.sync(buf, 'start', 'read');
  console.log(`sync start returned after ${Date.now() - t0} ms`);
  dmabuf.sync(buf, 'end', 'read');
  return;
}

let failures = 0;
let passes = 0;
const ok = (name) => {
  passes++;
  console.log(`ok ${name}`);
};
const fail = (name, why) => {
  failures++;
  console.log(`FAIL ${name}: ${why}`);
};
function check(name, fn) {
  try {
    const r = fn();
    if (r === false) fail(name, 'check returned false');
    else ok(name);
  } catch (e) {
    fail(name, e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : String(e));
  }
}
function expectCode(name, fn, code, extra) {
  try {
    fn();
    fail(name, `did not throw (expected ${code})`);
  } catch (e) {
    if (e.code !== code) return fail(name, `expected ${code}, got ${e.code}: ${e.message}`);
    if (extra && !extra(e))
      return fail(name, `right code ${code} but wrong details: ${e.message} (errnoName ${e.errnoName})`);
    ok(`${name} -> ${code}: ${e.message}`);
  }
}
function assert(cond, why) {
  if (!cond) throw new Error(why);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function runChild(args, timeoutMs) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [__filename, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, ms: Date.now() - t0 });
    });
  });
}

const PAGE = 4096;
const inVm = fs.existsSync('/dev/udmabuf') || fs.existsSync('/dev/dri');

// ---------------------------------------------------------------------------------------
// Always: the API surface, and argument / handle-type errors that need no device.
function commonChecks() {
  check('exports: dmabuf/drm/fence objects of functions', () => {
    const want = {
      dmabuf: ['createUdmabuf', 'heapAlloc', 'sync', 'exportSyncFile', 'importSyncFile', 'setName', 'info'],
      drm: [
        'listNodes',
        'open',
        'version',
        'createDumb',
        'primeExport',
        'closeHandle',
        'vgemFenceAttach',
        'vgemFenceSignal',
      ],
      fence: ['info', 'merge', 'wait'],
    };
    for (const [group, names] of Object.entries(want))
      for (const n of names) assert(typeof addon[group][n] === 'function', `${group}.${n} missing`);
  });
  const memfd = addon.createMemfd('smoke-common', 2 * PAGE);
  expectCode('dmabuf.sync on a memfd', () => dmabuf.sync(memfd, 'start', 'rw'), 'E_HANDLE_TYPE');
  expectCode('dmabuf.info on a memfd', () => dmabuf.info(memfd), 'E_HANDLE_TYPE');
  expectCode('dmabuf.exportSyncFile on a memfd', () => dmabuf.exportSyncFile(memfd, 'read'), 'E_HANDLE_TYPE');
  expectCode('dmabuf.setName on a memfd', () => dmabuf.setName(memfd, 'x'), 'E_HANDLE_TYPE');
  expectCode('fence.info on a memfd', () => fence.info(memfd), 'E_HANDLE_TYPE');
  expectCode('fence.merge on memfds', () => fence.merge(memfd, memfd, 'm'), 'E_HANDLE_TYPE');
  expectCode('fence.wait on a memfd', () => fence.wait(memfd, () => {}), 'E_HANDLE_TYPE');
  expectCode('dmabuf.sync on a non-NativeFd', () => dmabuf.sync(3, 'start', 'rw'), 'E_HANDLE_TYPE');
  expectCode('drm.version on a memfd', () => drm.version(memfd), 'E_HANDLE_TYPE');
  expectCode('drm.createDumb on a memfd', () => drm.createDumb(memfd, 64, 64, 32), 'E_HANDLE_TYPE');
  expectCode('drm.open(/dev/null)', () => drm.open('/dev/null'), 'E_HANDLE_TYPE');
  expectCode("heapAlloc('../x')", () => dmabuf.heapAlloc('../x', PAGE), 'E_INVALID_ARGUMENT');
  expectCode("heapAlloc('System')", () => dmabuf.heapAlloc('System', PAGE), 'E_INVALID_ARGUMENT');
  expectCode("heapAlloc('')", () => dmabuf.heapAlloc('', PAGE), 'E_INVALID_ARGUMENT');
  expectCode('heapAlloc size 0', () => dmabuf.heapAlloc('system', 0), 'E_INVALID_ARGUMENT');
  expectCode('heapAlloc size 1.5', () => dmabuf.heapAlloc('system', 1.5), 'E_INVALID_ARGUMENT');
  expectCode('createUdmabuf misaligned offset', () => dmabuf.createUdmabuf(memfd, 1, PAGE), 'E_INVALID_ARGUMENT');
  expectCode('createUdmabuf misaligned size', () => dmabuf.createUdmabuf(memfd, 0, 100), 'E_INVALID_ARGUMENT');
  expectCode('createUdmabuf past the memfd end', () => dmabuf.createUdmabuf(memfd, PAGE, 2 * PAGE), 'E_OUT_OF_BOUNDS');
  expectCode('createUdmabuf size 0', () => dmabuf.createUdmabuf(memfd, 0, 0), 'E_INVALID_ARGUMENT');
  const closed = addon.createMemfd('smoke-closed', PAGE);
  closed.close();
  expectCode('createUdmabuf on a closed NativeFd', () => dmabuf.createUdmabuf(closed, 0, PAGE), 'E_CLOSED');
  memfd.close();
}

// ---------------------------------------------------------------------------------------
// Host (no devices): everything fails cleanly.
function hostChecks() {
  check('drm.listNodes() is [] without /dev/dri', () => Array.isArray(drm.listNodes()) && drm.listNodes().length === 0);
  const memfd = addon.createMemfd('smoke-host', 4 * PAGE);
  expectCode(
    'createUdmabuf without /dev/udmabuf',
    () => dmabuf.createUdmabuf(memfd, 0, 4 * PAGE),
    'E_UNSUPPORTED',
    (e) => e.syscall === 'open' && e.errnoName === 'ENOENT',
  );
  expectCode(
    "heapAlloc('system') without /dev/dma_heap",
    () => dmabuf.heapAlloc('system', PAGE),
    'E_UNSUPPORTED',
    (e) => e.errnoName === 'ENOENT',
  );
  expectCode(
    'drm.open(/dev/dri/card0) absent',
    () => drm.open('/dev/dri/card0'),
    'E_SYSTEM',
    (e) => e.errnoName === 'ENOENT',
  );
  memfd.close();
}

// ---------------------------------------------------------------------------------------
// VM: the real thing.
async function vmChecks() {
  const SIZE = 1 << 20;
  const fill = (u8, seed) => {
    for (let i = 0; i < u8.length; i += 4096) u8[i] = (i / 4096 + seed) & 0xff;
  };
  const same = (a, b, seed) => {
    for (let i = 0; i < a.length; i += 4096) if (a[i] !== ((i / 4096 + seed) & 0xff) || b[i] !== a[i]) return false;
    return true;
  };

  // --- udmabuf
  const memfd = addon.createMemfd('smoke-udmabuf', SIZE);
  const memMap = new Uint8Array(memfd.map(0, SIZE, 'shared'));
  fill(memMap, 7);
  let ub;
  check('createUdmabuf(sealed memfd, 0, 1 MiB)', () => {
    ub = dmabuf.createUdmabuf(memfd, 0, SIZE);
    assert(ub.stat().kind === 'dmabuf', `kind ${ub.stat().kind}`);
  });
  check('udmabuf info: exporter udmabuf, size, name null, inode bigint', () => {
    const i = dmabuf.info(ub);
    assert(i.exporter === 'udmabuf', `exporter ${i.exporter}`);
    assert(i.size === SIZE, `size ${i.size}`);
    assert(i.name === null, `name ${i.name}`);
    assert(typeof i.inode === 'bigint' && i.inode === ub.stat().inode, `inode ${i.inode}`);
  });
  check('udmabuf mmap (sync start/end read) shows bytes written through the memfd', () => {
    const m = new Uint8Array(ub.map(0, SIZE, 'shared'));
    dmabuf.sync(ub, 'start', 'read');
    const good = same(m, memMap, 7);
    dmabuf.sync(ub, 'end', 'read');
    assert(good, 'contents differ');
    addon.unmap(m.buffer);
  });
  check('udmabuf mmap write (sync rw) is visible through the memfd', () => {
    const m = new Uint8Array(ub.map(0, SIZE, 'shared'));
    dmabuf.sync(ub, 'start', 'write');
    fill(m, 99);
    dmabuf.sync(ub, 'end', 'write');
    assert(same(memMap, m, 99), 'memfd does not show the write');
    addon.unmap(m.buffer);
  });
  check('createUdmabuf(memfd, 4096, 8192): offset honoured', () => {
    const part = dmabuf.createUdmabuf(memfd, PAGE, 2 * PAGE);
    const i = dmabuf.info(part);
    assert(i.size === 2 * PAGE, `size ${i.size}`);
    const m = new Uint8Array(part.map(0, 2 * PAGE, 'shared'));
    dmabuf.sync(part, 'start', 'read');
    const v = [m[0], m[PAGE]];
    dmabuf.sync(part, 'end', 'read');
    assert(v[0] === memMap[PAGE] && v[1] === memMap[2 * PAGE], `got ${v}, want ${memMap[PAGE]},${memMap[2 * PAGE]}`);
    addon.unmap(m.buffer);
    part.close();
  });
  check('setName then info().name', () => {
    dmabuf.setName(ub, 'smoke-name');
    const i = dmabuf.info(ub);
    assert(i.name === 'smoke-name', `name ${i.name}`);
    dmabuf.setName(ub, 'x'.repeat(31));
    assert(dmabuf.info(ub).name === 'x'.repeat(31), 'name of 31 bytes');
  });
  expectCode('setName 32 bytes', () => dmabuf.setName(ub, 'x'.repeat(32)), 'E_INVALID_ARGUMENT');
  expectCode('setName empty', () => dmabuf.setName(ub, ''), 'E_INVALID_ARGUMENT');
  expectCode("sync phase 'middle'", () => dmabuf.sync(ub, 'middle', 'rw'), 'E_INVALID_ARGUMENT');
  expectCode("sync access 'x'", () => dmabuf.sync(ub, 'start', 'x'), 'E_INVALID_ARGUMENT');
  expectCode('createUdmabuf on a dma-buf', () => dmabuf.createUdmabuf(ub, 0, PAGE), 'E_HANDLE_TYPE');
  check('exportSyncFile on an idle udmabuf: a signalled sync_file', () => {
    const sf = dmabuf.exportSyncFile(ub, 'rw');
    assert(sf.stat().kind === 'syncfile', `kind ${sf.stat().kind}`);
    const i = fence.info(sf);
    assert(i.status === 1, `status ${i.status}`);
    sf.close();
  });
  {
    const limitMb = Number(fs.readFileSync('/sys/module/udmabuf/parameters/size_limit_mb', 'utf8'));
    const big = addon.createMemfd('smoke-big', (limitMb + 1) << 20);
    expectCode(
      `createUdmabuf over size_limit_mb (${limitMb})`,
      () => dmabuf.createUdmabuf(big, 0, (limitMb + 1) << 20),
      'E_INVALID_ARGUMENT',
      (e) => /size_limit_mb/.test(e.message),
    );
    big.close();
  }
  addon.unmap(memMap.buffer);

  // --- unsealed / write-sealed memfds, made by a Python peer and sent over SCM_RIGHTS
  await (async () => {
    const sock = `/tmp/sl-smoke-${process.pid}.sock`;
    const py = `
import fcntl, os, socket, struct, sys
F_ADD_SEALS, F_SEAL_SHRINK, F_SEAL_WRITE = 1033, 2, 8
a = os.memfd_create("unsealed", os.MFD_ALLOW_SEALING); os.ftruncate(a, 65536)
b = os.memfd_create("wsealed", os.MFD_ALLOW_SEALING); os.ftruncate(b, 65536)
fcntl.fcntl(b, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_WRITE)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(sys.argv[1])
socket.send_fds(s, [struct.pack("<IHBB", 8, 0x7777, 2, 0)], [a, b])
s.recv(1)
`;
    let fds;
    const listener = addon.listen(sock);
    try {
      fds = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no fds from the python peer within 20 s')), 20000);
        listener.start((ch) => {
          if (!ch) return;
          ch.start(
            Buffer.alloc(65536),
            (_off, _len, got) => {
              clearTimeout(timer);
              resolve(got);
              ch.close();
            },
            (code, message) => reject(new Error(`${code} ${message}`)),
          );
        });
        const pyBin = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
        const child = spawn(pyBin, ['-c', py, sock], { stdio: ['ignore', 'inherit', 'inherit'] });
        child.on('error', reject);
      });
    } catch (e) {
      fail('unsealed memfd from a python peer', e.message);
      return;
    } finally {
      listener.close();
      fs.rmSync(sock, { force: true });
    }
    const [unsealed, wsealed] = fds;
    check('peer memfds arrived as memfds', () => unsealed.stat().kind === 'memfd' && wsealed.stat().kind === 'memfd');
    expectCode(
      'createUdmabuf on an unsealed memfd',
      () => dmabuf.createUdmabuf(unsealed, 0, PAGE),
      'E_UNSEALED',
      (e) => /F_SEAL_SHRINK/.test(e.message),
    );
    expectCode(
      'createUdmabuf on a write-sealed memfd',
      () => dmabuf.createUdmabuf(wsealed, 0, PAGE),
      'E_INVALID_ARGUMENT',
      (e) => /F_SEAL_WRITE/.test(e.message),
    );
    unsealed.close();
    wsealed.close();
  })();

  // --- dma-heap
  check("heapAlloc('system', 1 MiB): exporter system, size, map+sync round trip", () => {
    const h = dmabuf.heapAlloc('system', SIZE);
    const i = dmabuf.info(h);
    assert(i.exporter === 'system', `exporter ${i.exporter}`);
    assert(i.size === SIZE, `size ${i.size}`);
    const m = new Uint8Array(h.map(0, SIZE, 'shared'));
    dmabuf.sync(h, 'start', 'write');
    fill(m, 3);
    dmabuf.sync(h, 'end', 'write');
    const m2 = new Uint8Array(h.dup().map(0, SIZE, 'shared'));
    dmabuf.sync(h, 'start', 'read');
    const good = same(m2, m, 3);
    dmabuf.sync(h, 'end', 'read');
    assert(good, 'second mapping differs');
    addon.unmap(m.buffer);
    addon.unmap(m2.buffer);
    h.close();
  });
  check("heapAlloc('system', 1000): kernel rounds up to a page", () => {
    const h = dmabuf.heapAlloc('system', 1000);
    const size = dmabuf.info(h).size;
    h.close();
    assert(size === PAGE, `size ${size}`);
  });
  expectCode(
    "heapAlloc('nonexistent')",
    () => dmabuf.heapAlloc('nonexistent', PAGE),
    'E_UNSUPPORTED',
    (e) => e.errnoName === 'ENOENT',
  );

  // --- DRM / vgem
  let card;
  check('drm.listNodes() finds card0 (card) and renderD128 (render)', () => {
    const nodes = drm.listNodes();
    assert(
      nodes.some((n) => n.path === '/dev/dri/card0' && n.kind === 'card'),
      JSON.stringify(nodes),
    );
    assert(
      nodes.some((n) => n.path === '/dev/dri/renderD128' && n.kind === 'render'),
      JSON.stringify(nodes),
    );
  });
  check('drm.open(card0) + version(): vgem', () => {
    card = drm.open('/dev/dri/card0');
    const v = drm.version(card);
    assert(v.name === 'vgem', JSON.stringify(v));
    assert([v.major, v.minor, v.patch].every(Number.isInteger), JSON.stringify(v));
    console.log(`  # vgem version ${JSON.stringify(v)}`);
  });
  if (!card) return;
  let bo;
  let boBuf;
  check('createDumb(64x64x32): pitch 256, size 16384', () => {
    bo = drm.createDumb(card, 64, 64, 32);
    assert(bo.pitch === 256 && bo.size === 16384 && bo.handle > 0, JSON.stringify(bo));
  });
  check("primeExport: a dma-buf with exporter 'drm', size 16384, mappable", () => {
    boBuf = drm.primeExport(card, bo.handle);
    const i = dmabuf.info(boBuf);
    assert(i.exporter === 'drm' && i.size === 16384, JSON.stringify({ ...i, inode: String(i.inode) }));
    const m = new Uint8Array(boBuf.map(0, 16384, 'shared'));
    dmabuf.sync(boBuf, 'start', 'rw');
    m[100] = 42;
    const v = m[100];
    dmabuf.sync(boBuf, 'end', 'rw');
    addon.unmap(m.buffer);
    assert(v === 42, 'write did not stick');
  });
  {
    const render = drm.open('/dev/dri/renderD128');
    check('drm.version(renderD128) is vgem too', () => drm.version(render).name === 'vgem');
    expectCode(
      'createDumb on the render node',
      () => drm.createDumb(render, 64, 64, 32),
      'E_SYSTEM',
      (e) => e.errnoName === 'EACCES',
    );
    render.close();
  }
  expectCode('createDumb width 0', () => drm.createDumb(card, 0, 64, 32), 'E_INVALID_ARGUMENT');
  expectCode(
    'primeExport of an unknown handle',
    () => drm.primeExport(card, 9999),
    'E_SYSTEM',
    (e) => e.errnoName === 'ENOENT',
  );
  expectCode(
    'vgemFenceSignal of an unknown fence',
    () => drm.vgemFenceSignal(card, 9999),
    'E_SYSTEM',
    (e) => e.errnoName === 'ENOENT',
  );
  expectCode(
    'vgemFenceAttach write must be boolean',
    () => drm.vgemFenceAttach(card, bo.handle, 1),
    'E_INVALID_ARGUMENT',
  );
  expectCode(
    'drm.open(/nonexistent)',
    () => drm.open('/nonexistent'),
    'E_SYSTEM',
    (e) => e.errnoName === 'ENOENT',
  );

  // --- fences: attach, export, info, wait, signal
  const newBuffer = () => {
    const b = drm.createDumb(card, 64, 64, 32);
    return { handle: b.handle, buf: drm.primeExport(card, b.handle) };
  };
  await (async () => {
    let fenceId;
    let sf;
    check('vgemFenceAttach(write) -> fence id; exportSyncFile(write) -> sync_file', () => {
      fenceId = drm.vgemFenceAttach(card, bo.handle, true);
      assert(Number.isInteger(fenceId) && fenceId > 0, `fence id ${fenceId}`);
      sf = dmabuf.exportSyncFile(boBuf, 'write');
      assert(sf.stat().kind === 'syncfile', `kind ${sf.stat().kind}`);
    });
    if (!sf) return;
    check('fence.info: status 0, one vgem fence', () => {
      const i = fence.info(sf);
      console.log(`  # fence.info ${JSON.stringify(i)}`);
      assert(i.status === 0, `status ${i.status}`);
      assert(
        i.fences.length === 1 && i.fences[0].driver === 'vgem' && i.fences[0].status === 0,
        JSON.stringify(i.fences),
      );
    });
    expectCode(
      'second write fence on a busy buffer',
      () => drm.vgemFenceAttach(card, bo.handle, true),
      'E_SYSTEM',
      (e) => e.errnoName === 'EBUSY',
    );
    expectCode('fence.wait without a callback', () => fence.wait(sf), 'E_INVALID_ARGUMENT');
    expectCode('fence.wait with ref: 1', () => fence.wait(sf, () => {}, { ref: 1 }), 'E_INVALID_ARGUMENT');
    const keep = sf.dup();
    const calls = [];
    let signalledAt = 0;
    let calledAt = 0;
    const waiter = fence.wait(sf, (err, msg) => {
      calledAt = performance.now();
      calls.push([err, msg]);
    });
    sf.close(); // the waiter holds its own dup
    check('fence.wait returns { cancel }', () => typeof waiter.cancel === 'function');
    await sleep(500);
    check('wait callback does not fire before the signal (500 ms)', () => {
      assert(calls.length === 0, `called: ${JSON.stringify(calls)}`);
      assert(fence.info(keep).status === 0, 'fence signalled by itself');
    });
    signalledAt = performance.now();
    check('vgemFenceSignal', () => drm.vgemFenceSignal(card, fenceId));
    for (let i = 0; i < 200 && calls.length === 0; i++) await sleep(10);
    check('wait callback fires with null after the signal', () => {
      assert(calls.length === 1 && calls[0][0] === null, JSON.stringify(calls));
      console.log(`  # signal -> callback ${(calledAt - signalledAt).toFixed(1)} ms`);
    });
    check('fence.info after signal: status 1', () => fence.info(keep).status === 1);
    waiter.cancel();
    await sleep(50);
    check('cancel after completion is a no-op (callback ran exactly once)', () => calls.length === 1);
    expectCode(
      'vgemFenceSignal twice',
      () => drm.vgemFenceSignal(card, fenceId),
      'E_SYSTEM',
      (e) => e.errnoName === 'ENOENT',
    );
    check('exportSyncFile(read) after the signal: signalled', () => {
      const s = dmabuf.exportSyncFile(boBuf, 'read');
      const st = fence.info(s).status;
      s.close();
      assert(st === 1, `status ${st}`);
    });
    keep.close();
  })();

  // --- already-signalled fence: callback still comes from the loop, not synchronously
  await (async () => {
    const sf = dmabuf.exportSyncFile(boBuf, 'rw');
    let called = null;
    let sync = true;
    fence.wait(sf, (err) => {
      called = { err, sync };
    });
    sync = false;
    sf.close();
    for (let i = 0; i < 100 && !called; i++) await sleep(10);
    check('wait on a signalled sync_file: async callback with null', () => {
      assert(called && called.err === null && called.sync === false, JSON.stringify(called));
    });
  })();

  // --- the waiter's dup is closed as soon as it finishes (not when JS collects the handle)
  await (async () => {
    const count = () => fs.readdirSync('/proc/self/fd').length;
    const sf = dmabuf.exportSyncFile(boBuf, 'rw'); // signalled
    // Earlier checks left unclosed NativeFds for the collector; collect them now, or their
    // finalizers close fds in the middle of this count (seen: 24 -> 23).
    if (global.gc) {
      global.gc();
      await sleep(10);
    }
    const before = count();
    let done = 0;
    const handles = [];
    for (let i = 0; i < 50; i++) handles.push(fence.wait(sf, () => done++));
    for (let i = 0; i < 50; i++) fence.wait(sf, () => done++).cancel();
    const during = count();
    for (let i = 0; i < 200 && done < 100; i++) await sleep(10);
    await sleep(20);
    const after = count();
    check(`100 waits: fds ${before} -> ${during} while waiting -> ${after} after, handles still referenced`, () => {
      assert(done === 100, `done ${done}`);
      assert(during >= before + 100, 'waiters hold no dup?');
      assert(after === before, 'dups leaked');
      assert(handles.length === 50);
    });
    sf.close();
  })();

  // --- a throwing callback becomes an uncaught exception (as from a timer), once
  await (async () => {
    const sf = dmabuf.exportSyncFile(boBuf, 'rw');
    const seen = [];
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', (e) => seen.push(e.message));
    fence.wait(sf, () => {
      throw new Error('boom from wait');
    });
    sf.close();
    for (let i = 0; i < 100 && seen.length === 0; i++) await sleep(10);
    process.removeAllListeners('uncaughtException');
    for (const l of listeners) process.on('uncaughtException', l);
    check(
      'a throw in the wait callback reaches uncaughtException',
      () => seen.length === 1 && seen[0] === 'boom from wait',
    );
  })();

  // --- cancel
  await (async () => {
    const b = newBuffer();
    const id = drm.vgemFenceAttach(card, b.handle, false);
    const sf = dmabuf.exportSyncFile(b.buf, 'write');
    const calls = [];
    const w = fence.wait(sf, (err) => calls.push(err), { ref: false });
    let insideCancel = -1;
    w.cancel();
    insideCancel = calls.length;
    w.cancel();
    for (let i = 0; i < 100 && calls.length === 0; i++) await sleep(10);
    drm.vgemFenceSignal(card, id); // would have woken the waiter
    await sleep(100);
    check("cancel(): one callback with 'E_CANCELLED', not from inside cancel(), idempotent", () => {
      assert(insideCancel === 0, 'callback ran inside cancel()');
      assert(calls.length === 1 && calls[0] === 'E_CANCELLED', JSON.stringify(calls));
    });
    // cancel from inside another waiter's callback, both fences signalled together
    const c = newBuffer();
    const idC = drm.vgemFenceAttach(card, c.handle, true);
    const s1 = dmabuf.exportSyncFile(c.buf, 'write');
    const s2 = s1.dup();
    const got = [];
    let w2;
    fence.wait(s1, (err) => {
      got.push(['w1', err]);
      w2.cancel();
    });
    w2 = fence.wait(s2, (err) => got.push(['w2', err]));
    drm.vgemFenceSignal(card, idC);
    for (let i = 0; i < 100 && got.length < 2; i++) await sleep(10);
    await sleep(50);
    check('cancel() from inside another callback: each callback exactly once', () => {
      const w1 = got.filter((g) => g[0] === 'w1');
      const w2s = got.filter((g) => g[0] === 'w2');
      assert(w1.length === 1 && w1[0][1] === null, JSON.stringify(got));
      assert(w2s.length === 1 && (w2s[0][1] === null || w2s[0][1] === 'E_CANCELLED'), JSON.stringify(got));
      console.log(`  # ${JSON.stringify(got)}`);
    });
    for (const f of [sf, s1, s2, b.buf, c.buf]) f.close();
    drm.closeHandle(card, b.handle);
    drm.closeHandle(card, c.handle);
  })();

  // --- merge
  await (async () => {
    const a = newBuffer();
    const b = newBuffer();
    const idA = drm.vgemFenceAttach(card, a.handle, true);
    const idB = drm.vgemFenceAttach(card, b.handle, true);
    const sA = dmabuf.exportSyncFile(a.buf, 'write');
    const sB = dmabuf.exportSyncFile(b.buf, 'write');
    let merged;
    check('fence.merge(a, b, name): two fences, status 0', () => {
      merged = fence.merge(sA, sB, 'smoke-merged');
      const i = fence.info(merged);
      assert(i.name === 'smoke-merged' && i.status === 0 && i.fences.length === 2, JSON.stringify(i));
    });
    expectCode('fence.merge name of 32 bytes', () => fence.merge(sA, sB, 'x'.repeat(32)), 'E_INVALID_ARGUMENT');
    if (!merged) return;
    let result;
    fence.wait(merged, (err) => (result = err));
    drm.vgemFenceSignal(card, idA);
    await sleep(200);
    check('merged fence still active after one signal', () => result === undefined && fence.info(merged).status === 0);
    drm.vgemFenceSignal(card, idB);
    for (let i = 0; i < 100 && result === undefined; i++) await sleep(10);
    check('merged fence signals after both', () => result === null && fence.info(merged).status === 1);
    for (const f of [sA, sB, merged, a.buf, b.buf]) f.close();
  })();

  // --- importSyncFile
  await (async () => {
    const target = newBuffer();
    const src = newBuffer();
    const id = drm.vgemFenceAttach(card, src.handle, true);
    const sf = dmabuf.exportSyncFile(src.buf, 'write');
    check('importSyncFile(target, fence, write) makes the target busy', () => {
      const before = dmabuf.exportSyncFile(target.buf, 'read');
      assert(fence.info(before).status === 1, 'target not idle before');
      before.close();
      dmabuf.importSyncFile(target.buf, sf, 'write');
      const after = dmabuf.exportSyncFile(target.buf, 'read');
      const i = fence.info(after);
      after.close();
      assert(i.status === 0 && i.fences.some((f) => f.driver === 'vgem'), JSON.stringify(i));
    });
    drm.vgemFenceSignal(card, id);
    check('target idle again after the imported fence signals', () => {
      const after = dmabuf.exportSyncFile(target.buf, 'read');
      const st = fence.info(after).status;
      after.close();
      return st === 1;
    });
    expectCode(
      'importSyncFile with a memfd as the fence',
      () => dmabuf.importSyncFile(target.buf, addon.createMemfd('x', PAGE), 'write'),
      'E_HANDLE_TYPE',
    );
    for (const f of [sf, target.buf, src.buf]) f.close();
  })();

  // --- ref option: an unsignalled waiter with ref:false does not keep a process alive
  {
    const [unref, ref, block] = await Promise.all([
      runChild(['--child-wait', 'unref'], 30000),
      runChild(['--child-wait', 'ref'], 30000),
      runChild(['--child-sync-block'], 30000),
    ]);
    check('(kernel behaviour) sync start on a buffer with an unsignalled fence blocks until it signals', () => {
      const m = /sync start returned after (\d+) ms/.exec(block.out);
      assert(block.code === 0 && m, JSON.stringify(block));
      console.log(`  # ${m[0]}`);
      assert(Number(m[1]) > 5000, 'did not block');
    });
    check(`{ ref: false }: child exits without waiting (${unref.ms} ms)`, () => {
      assert(unref.code === 0 && /waiting/.test(unref.out) && !/callback/.test(unref.out), JSON.stringify(unref));
    });
    check(`{ ref: true } (default): child stays until vgem's own timeout signals (${ref.ms} ms)`, () => {
      assert(ref.code === 0 && /callback null after \d+ ms/.test(ref.out), JSON.stringify(ref));
      console.log(`  # ${ref.out.trim().split('\n').pop()}`);
    });
  }

  // --- a worker that is terminated while waiting must not crash the process
  await (async () => {
    const src = `
      const { parentPort } = require('node:worker_threads');
      const { drm, dmabuf, fence } = require(${JSON.stringify(ADDON)});
      const card = drm.open('/dev/dri/card0');
      const { handle } = drm.createDumb(card, 16, 16, 32);
      const buf = drm.primeExport(card, handle);
      drm.vgemFenceAttach(card, handle, true);
      const sf = dmabuf.exportSyncFile(buf, 'write');
      fence.wait(sf, () => parentPort.postMessage('callback'));
      const w2 = fence.wait(sf, () => {});
      w2.cancel(); // a close pending when the worker dies
      parentPort.postMessage('waiting');
    `;
    const worker = new Worker(src, { eval: true });
    const msg = await new Promise((resolve) => {
      worker.once('message', resolve);
      worker.once('error', (e) => resolve(`error ${e.message}`));
    });
    const code = await worker.terminate();
    check(`worker terminated while waiting: clean (message ${msg}, exit ${code})`, () => msg === 'waiting');
  })();

  drm.closeHandle(card, bo.handle);
  check('closeHandle twice -> E_SYSTEM', () => {
    try {
      drm.closeHandle(card, bo.handle);
      return false;
    } catch (e) {
      return e.code === 'E_SYSTEM';
    }
  });
  boBuf.close();
  card.close();
  ub.close();
  memfd.close();
}

(async () => {
  const t0 = performance.now();
  console.log(`# ${inVm ? 'VM' : 'host'} mode, node ${process.version}, kernel ${require('node:os').release()}`);
  commonChecks();
  if (inVm) await vmChecks();
  else hostChecks();
  console.log(`# ${passes} passed, ${failures} failed in ${(performance.now() - t0).toFixed(0)} ms`);
  process.exitCode = failures > 0 ? 1 : 0;
})().catch((e) => {
  console.log(`FAIL unexpected: ${e.stack}`);
  process.exitCode = 1;
});
