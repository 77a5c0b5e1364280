/**
 * The mechanisms of this build, registered in preference order: one line each. A new mechanism
 * is its own file (plus its native code) and one line here; the core finds it through the
 * registry and asks it capabilities, never its name.
 */
import { dmabufMechanism } from './dmabuf/index.js';
import { dxgiMechanism } from './dxgi.js';
import { iosurfaceMechanism, iosurfacePipeMechanism } from './iosurface.js';
import { MechanismRegistry } from './registry.js';
import { shmMechanism } from './shm.js';
import { streamMechanism } from './stream.js';
import { winshmMechanism } from './winshm.js';

export type * from './types.js';
export { ImportRefused, isRefusal, noCpuAccess } from './types.js';
export { MechanismRegistry, type MechanismReport } from './registry.js';

/** The process-wide registry servers and clients use unless given another. */
export const mechanisms = new MechanismRegistry()
  // Zero-copy GPU first: dxgi.v1 (Windows) where both processes share the adapter, else winshm.v1.
  .register(dxgiMechanism)
  .register(dmabufMechanism)
  // macOS: IOSurface by mach port; the UTM-compatible global-ID mode only where a server names it.
  .register(iosurfaceMechanism)
  .register(iosurfacePipeMechanism)
  .register(shmMechanism)
  .register(winshmMechanism)
  .register(streamMechanism);

/** Every mechanism with why it is (not) available here: what `surfacelink doctor` prints. */
export function mechanismReports() {
  return mechanisms.reports();
}
