/**
 * dxgi.v1's probe in a Windows node.exe: the native D3D11 probe (which call failed, with which
 * HRESULT), the mechanism's report, what createTexture does here, and what dxgi.v1's importer
 * says of a handle that is not a texture (a section). Emits one 'probe' event.
 */
const path = require('node:path');
const { emit, native } = require('./common.cjs');

const d3d11 = native().d3d11;
const probe = d3d11.probe();
const reports = require(path.join(process.env.SL_LIB, 'mechanisms', 'index.js')).mechanismReports();
let texture;
try {
  const t = d3d11.createTexture(16, 16, 87);
  texture = { width: t.width, height: t.height, format: t.format };
  t.close();
} catch (e) {
  texture = { code: e.code, message: e.message };
}

// A section handle where a texture is expected: refused as E_HANDLE_TYPE before anything is opened.
let badHandle;
const section = native().createSection(4096);
try {
  const { dxgiMechanism } = require(path.join(process.env.SL_LIB, 'mechanisms', 'dxgi.js'));
  const { FORMATS } = require(path.join(process.env.SL_LIB, 'formats.js'));
  const desc = {
    surfaceId: 1,
    bufferId: 1,
    generation: 0,
    width: 16,
    height: 16,
    format: FORMATS.XRGB8888.fourcc,
    modifier: 0n,
    orientation: 0,
    visible: { x: 0, y: 0, width: 16, height: 16 },
    planes: [{ handleIndex: 0, stride: 64, offset: 0, size: 1024 }],
  };
  dxgiMechanism.importBuffer(desc, FORMATS.XRGB8888, [{ kind: 'nt', handle: section }], {});
  badHandle = { code: null };
} catch (e) {
  badHandle = { code: e.code, message: e.message };
}
section.close();
emit('probe', { probe, report: reports.find((r) => r.name === 'dxgi.v1'), reports, texture, badHandle });
