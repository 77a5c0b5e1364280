/**
 * The demo's answer to input (src/demo/interaction.ts, the scenes of src/demo/pattern.ts): the
 * plain pattern is unchanged, an interactive scene is drawn the same on the CPU and as
 * rectangle fills (the GL path), damage covers every change, and events move the box, change its
 * colour, show keys, switch the input mode and move the cursor.
 */
import { expect } from 'chai';
import type { CursorImage, InputEvent, InputMode, SharedSurface } from '../../src/index.js';
import { DemoInput, arrowCursor } from '../../src/demo/interaction.js';
import {
  copyScene,
  drawPattern,
  drawScene,
  paintScene,
  patternLayout,
  sceneDamage,
  sceneOf,
  sceneRects,
  type RectPainter,
  type Scene,
} from '../../src/demo/pattern.js';

const width = 203;
const height = 161;
const stride = 1024;
const layout = patternLayout(width, height);

/** A RectPainter writing into CPU memory the way SurfaceRenderer.fillRect writes a buffer. */
function cpuPainter(px: Uint8Array): RectPainter {
  return {
    fillRect(x, y, w, h, r, g, b) {
      for (let row = y; row < y + h; row++)
        for (let col = x; col < x + w; col++) px.set([b, g, r, 0xff], row * stride + col * 4);
    },
  };
}

const fresh = (): Uint8Array => new Uint8Array(stride * height);
const rowsEqual = (a: Uint8Array, b: Uint8Array): boolean => {
  for (let y = 0; y < height; y++)
    if (Buffer.compare(a.subarray(y * stride, y * stride + width * 4), b.subarray(y * stride, y * stride + width * 4)))
      return false;
  return true;
};
const full = (scene: Scene): Uint8Array => {
  const px = fresh();
  drawScene(layout, px, stride, scene);
  return px;
};
const scene = (frame: number, boxX: number, boxY: number, colour: number, keys: number[]): Scene => ({
  frame,
  boxX,
  boxY,
  colour,
  keys,
});

const SCENES: Scene[] = [
  sceneOf(layout, 5),
  scene(6, 10, 20, 1, [30]),
  scene(7, 10, 20, 2, [30, 31, 767, 1, 2, 3, 4]),
  scene(8, 0, height - layout.box, 3, []),
  scene(9, width - layout.box, 0, 0, [57]),
  sceneOf(layout, 10),
];

describe('demo scenes and input (unit)', () => {
  it('the plain pattern is the scene of its frame, byte for byte', () => {
    for (const frame of [1, 2, 77]) {
      const a = fresh();
      drawPattern(layout, a, stride, frame);
      expect(rowsEqual(a, full(sceneOf(layout, frame))), `frame ${frame}`).to.equal(true);
    }
  });

  it('a scene shows its keys panel, box colour and position (and differs from the plain pattern)', () => {
    expect(layout.keys).to.not.equal(null);
    expect(layout.keySlots).to.equal(6);
    const k = layout.keys!;
    const plain = full(sceneOf(layout, 6));
    const keyed = full(scene(6, sceneOf(layout, 6).boxX, sceneOf(layout, 6).boxY, 0, [30]));
    let inPanel = 0;
    let outside = 0;
    for (let y = 0; y < height; y++)
      for (let x = 0; x < width; x++) {
        const i = y * stride + x * 4;
        if (plain[i] === keyed[i] && plain[i + 1] === keyed[i + 1] && plain[i + 2] === keyed[i + 2]) continue;
        if (x >= k.x && x < k.x + k.width && y >= k.y && y < k.y + k.height) inPanel++;
        else outside++;
      }
    expect(inPanel).to.be.above(0);
    expect(outside).to.equal(0);
    const red = full(scene(6, 40, 40, 3, []));
    const mid = (40 + (layout.box >> 1)) * stride + (40 + (layout.box >> 1)) * 4;
    expect([...red.subarray(mid, mid + 3)]).to.deep.equal([0x20, 0x20, 0xe0]); // palette colour 3 (B, G, R)
  });

  it('repainting from any scene, on the CPU or as fills, gives the scene drawn from scratch', () => {
    const cpu = fresh();
    const gpu = fresh();
    const painter = cpuPainter(gpu);
    const repainted = sceneRects(layout);
    let shown: Scene | undefined;
    for (const s of [...SCENES, ...SCENES.slice().reverse()]) {
      drawScene(layout, cpu, stride, s, shown);
      const count = paintScene(layout, painter, s, shown, repainted);
      expect(count).to.be.at.most(repainted.length);
      const expected = full(s);
      expect(rowsEqual(cpu, expected), `CPU, scene ${JSON.stringify(s)}`).to.equal(true);
      expect(rowsEqual(gpu, expected), `fills, scene ${JSON.stringify(s)}`).to.equal(true);
      shown = copyScene(s, { frame: 0, boxX: 0, boxY: 0, colour: 0, keys: [] });
    }
  });

  it('damage covers every pixel that changed between two scenes', () => {
    const rects = sceneRects(layout);
    for (let i = 1; i < SCENES.length; i++) {
      const before = full(SCENES[i - 1]);
      const after = full(SCENES[i]);
      const n = sceneDamage(layout, SCENES[i - 1], SCENES[i], rects);
      for (let y = 0; y < height; y++)
        for (let x = 0; x < width; x++) {
          const p = y * stride + x * 4;
          if (before[p] === after[p] && before[p + 1] === after[p + 1] && before[p + 2] === after[p + 2]) continue;
          const inside = rects.slice(0, n).some((r) => x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height);
          expect(inside, `scene ${i}: pixel ${x},${y} changed outside the damage`).to.equal(true);
        }
    }
  });

  it('events move the box and the cursor, change the colour, show keys and switch the mode', () => {
    const calls: string[] = [];
    let mode: InputMode = 'absolute';
    let cursor: CursorImage | null = null;
    const surface = {
      id: 3,
      get inputMode() {
        return mode;
      },
      setInputMode(m: InputMode) {
        mode = m;
        calls.push(`mode ${m}`);
      },
      setCursor(image: CursorImage | null) {
        cursor = image;
      },
      moveCursor(x: number, y: number, visible: boolean) {
        calls.push(`cursor ${x},${y},${visible}`);
      },
    } as unknown as SharedSurface;
    const demo = new DemoInput(layout, surface);
    demo.installCursor();
    expect(cursor).to.deep.equal(arrowCursor());
    const base = { surfaceId: 3, source: 'local', clientId: 1 } as const;
    const handle = (e: Record<string, unknown>): void => demo.handle({ ...base, ...e } as InputEvent, 1);
    const s = (): Scene => demo.scene(2, { frame: 0, boxX: 0, boxY: 0, colour: 0, keys: [] });
    expect(s()).to.deep.equal(sceneOf(layout, 2)); // nothing happened yet: the plain pattern
    handle({ kind: 'pointer', x: 100, y: 80 });
    expect(s()).to.include({ boxX: 100 - (layout.box >> 1), boxY: 80 - (layout.box >> 1), colour: 0 });
    handle({ kind: 'pointer', x: 0, y: height - 1 }); // the box stays inside
    expect(s()).to.include({ boxX: 0, boxY: height - layout.box });
    handle({ kind: 'button', button: 0x110, pressed: true });
    handle({ kind: 'button', button: 0x110, pressed: false });
    expect(s().colour).to.equal(1);
    handle({ kind: 'key', code: 30, pressed: true });
    handle({ kind: 'key', code: 48, pressed: true });
    handle({ kind: 'key', code: 30, pressed: false });
    expect(s().keys).to.deep.equal([48]);
    handle({ kind: 'button', button: 0x111, pressed: true });
    expect(mode).to.equal('relative');
    handle({ kind: 'motion', dx: 10, dy: -5 });
    expect(calls).to.deep.equal([
      'cursor 100,80,true',
      `cursor 0,${height - 1},true`,
      'mode relative',
      `cursor 10,${height - 6},true`,
    ]);
    handle({ kind: 'key', surfaceId: 4, code: 1, pressed: true }); // another surface: ignored
    expect(s().keys).to.deep.equal([48]);
  });
});
