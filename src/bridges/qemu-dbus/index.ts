/**
 * surfacelink/qemu: attaching a running QEMU's `-display dbus` to a SurfaceServer
 * (docs/qemu.md). `QemuBridge.attach(server, { qmp })` for a peer-to-peer display reached through
 * QMP, `{ dbus }` for a VM on a D-Bus bus; each graphic console becomes a surface, viewers' input
 * goes to the guest and the hardware cursor becomes the surface's cursor.
 *
 * @module qemu
 */
export { QemuBridge, type QemuBridgeOptions, type QemuBridgeEvents, type QemuConsoleInfo } from './bridge.js';
export type { ConsolePath } from './console.js';
export type { DisplayAddress } from './display.js';
