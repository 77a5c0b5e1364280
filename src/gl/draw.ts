/**
 * Small GL pieces the import and render paths share: the byte-order swizzle of shared formats,
 * an RGBA8 texture with a framebuffer (an offscreen render target), and a program that copies a
 * texture 1:1 into the bound framebuffer.
 *
 * Byte order: a texture made from a shared buffer holds the buffer's bytes as they are in
 * memory (XRGB8888 = B, G, R, X), stored as GL_RGBA8, because a memory-object texture cannot
 * be anything else. Sampling is made right with the texture's swizzle (ES 3.0
 * GL_TEXTURE_SWIZZLE_*): R←B, B←R, and A←1 for formats without alpha. Reading such a texture
 * back through a framebuffer gives the memory bytes; sampling it gives true RGBA.
 */
import { SurfaceLinkError } from '../errors.js';
import type { FormatInfo } from '../formats.js';
import type { GpuContext } from './context.js';
import { GL } from './egl.js';
import { checkSize } from './texture.js';

/** The four GL_TEXTURE_SWIZZLE_{R,G,B,A} sources that make a texture of `format`'s bytes sample as RGBA. */
export function swizzleFor(format: FormatInfo): readonly [number, number, number, number] {
  const bgr = format.planes[0].gl.format === GL.BGRA_EXT;
  return [bgr ? GL.BLUE : GL.RED, GL.GREEN, bgr ? GL.RED : GL.BLUE, format.hasAlpha ? GL.ALPHA : GL.ONE];
}

/** True for the 32-bit single-plane formats the GL paths take (XRGB/ARGB/XBGR/ABGR8888). */
export function isRgba32(format: FormatInfo): boolean {
  return format.planes.length === 1 && format.planes[0].bytesPerPixel === 4;
}

export function setSwizzle(ctx: GpuContext, format: FormatInfo): void {
  const gl = ctx.api.gl;
  const [r, g, b, a] = swizzleFor(format);
  gl.glTexParameteri(GL.TEXTURE_2D, GL.TEXTURE_SWIZZLE_R, r);
  gl.glTexParameteri(GL.TEXTURE_2D, GL.TEXTURE_SWIZZLE_G, g);
  gl.glTexParameteri(GL.TEXTURE_2D, GL.TEXTURE_SWIZZLE_B, b);
  gl.glTexParameteri(GL.TEXTURE_2D, GL.TEXTURE_SWIZZLE_A, a);
}

export function setNearest(ctx: GpuContext): void {
  const gl = ctx.api.gl;
  gl.glTexParameteri(GL.TEXTURE_2D, GL.TEXTURE_MIN_FILTER, GL.NEAREST);
  gl.glTexParameteri(GL.TEXTURE_2D, GL.TEXTURE_MAG_FILTER, GL.NEAREST);
  gl.glTexParameteri(GL.TEXTURE_2D, GL.TEXTURE_WRAP_S, GL.CLAMP_TO_EDGE);
  gl.glTexParameteri(GL.TEXTURE_2D, GL.TEXTURE_WRAP_T, GL.CLAMP_TO_EDGE);
}

/** A framebuffer with `texture` as its colour attachment; throws E_UNSUPPORTED if incomplete. */
export function framebufferFor(ctx: GpuContext, texture: number, what: string): number {
  const gl = ctx.api.gl;
  const ids = new Uint32Array(1);
  gl.glGenFramebuffers(1, ids);
  gl.glBindFramebuffer(GL.FRAMEBUFFER, ids[0]);
  gl.glFramebufferTexture2D(GL.FRAMEBUFFER, GL.COLOR_ATTACHMENT0, GL.TEXTURE_2D, texture, 0);
  const status = gl.glCheckFramebufferStatus(GL.FRAMEBUFFER);
  if (status !== GL.FRAMEBUFFER_COMPLETE) {
    gl.glBindFramebuffer(GL.FRAMEBUFFER, 0);
    gl.glDeleteFramebuffers(1, ids);
    throw new SurfaceLinkError(
      'E_UNSUPPORTED',
      `${what} cannot be rendered to: framebuffer status 0x${status.toString(16)} (${ctx.renderer})`,
    );
  }
  return ids[0];
}

/**
 * An RGBA8 texture and a framebuffer on it: somewhere to draw that is not shared. Rows are in
 * GL order: row 0 (GL y 0) is the first row read() returns.
 */
export class RenderTexture implements Disposable {
  /** GL_TEXTURE_2D name (RGBA8, immutable storage). */
  readonly texture: number;
  /** The framebuffer with `texture` as its colour attachment. */
  readonly framebuffer: number;
  private destroyed = false;
  private readonly untrack: () => void;

  /**
   * A `width` × `height` texture with its framebuffer on `ctx`; E_INVALID_ARGUMENT beyond
   * GL_MAX_TEXTURE_SIZE, E_UNSUPPORTED if the framebuffer is incomplete.
   */
  constructor(
    private readonly ctx: GpuContext,
    /** Width in pixels. */
    readonly width: number,
    /** Height in pixels. */
    readonly height: number,
  ) {
    checkSize(ctx, width, height);
    ctx.makeCurrent();
    ctx.drainGlErrors();
    const gl = ctx.api.gl;
    const ids = new Uint32Array(1);
    gl.glGenTextures(1, ids);
    this.texture = ids[0];
    gl.glBindTexture(GL.TEXTURE_2D, this.texture);
    setNearest(ctx);
    gl.glTexStorage2D(GL.TEXTURE_2D, 1, GL.RGBA8, width, height);
    gl.glBindTexture(GL.TEXTURE_2D, 0);
    try {
      ctx.checkGlError(`glTexStorage2D(RGBA8, ${width}x${height})`);
      this.framebuffer = framebufferFor(ctx, this.texture, `a ${width}x${height} RGBA8 texture`);
    } catch (error) {
      gl.glDeleteTextures(1, ids);
      throw error;
    }
    this.untrack = ctx.track(this);
  }

  /** Binds the framebuffer and sets the viewport to all of it. */
  bind(): void {
    this.ctx.makeCurrent();
    const gl = this.ctx.api.gl;
    gl.glBindFramebuffer(GL.FRAMEBUFFER, this.framebuffer);
    gl.glViewport(0, 0, this.width, this.height);
  }

  /**
   * Reads [x, y, width, height] (default all) as RGBA8 into `out`, rows packed, GL row order.
   * `out` must hold width × height × 4 bytes.
   */
  read(out: Uint8Array, x = 0, y = 0, width = this.width, height = this.height): Uint8Array {
    if (out.byteLength < width * height * 4)
      throw new SurfaceLinkError('E_INVALID_ARGUMENT', `read needs ${width * height * 4} bytes; got ${out.byteLength}`);
    this.bind();
    const gl = this.ctx.api.gl;
    gl.glPixelStorei(GL.PACK_ALIGNMENT, 1);
    gl.glReadPixels(x, y, width, height, GL.RGBA, GL.UNSIGNED_BYTE, out);
    return out;
  }

  /** Deletes the framebuffer and texture. Idempotent; GpuContext.close() does it too. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.untrack();
    if (this.ctx.closed) return;
    this.ctx.makeCurrent();
    const gl = this.ctx.api.gl;
    gl.glDeleteFramebuffers(1, new Uint32Array([this.framebuffer]));
    gl.glDeleteTextures(1, new Uint32Array([this.texture]));
  }

  /** Same as destroy(), for `using`. */
  [Symbol.dispose](): void {
    this.destroy();
  }
}

const VERTEX_SHADER = `#version 300 es
// One triangle that covers the viewport, from a 3-vertex buffer (not gl_VertexID: ANGLE 2.x on
// D3D11 does not know it).
layout(location = 0) in vec2 position;
void main() {
  gl_Position = vec4(position, 0.0, 1.0);
}
`;

/** The triangle's corners: (-1,-1), (3,-1), (-1,3) cover the viewport. */
const TRIANGLE = new Float32Array([-1, -1, 3, -1, -1, 3]);

const COPY_SHADER = `#version 300 es
precision highp float;
uniform highp sampler2D source;
uniform ivec2 origin;
out vec4 color;
// texelFetch: exactly one texel per pixel, no filtering or rounding of coordinates.
void main() {
  color = texelFetch(source, ivec2(gl_FragCoord.xy) - origin, 0);
}
`;

interface CopyProgram {
  program: number;
  source: number;
  origin: number;
  /** A vertex array with TRIANGLE bound to attribute 0. */
  vertexArray: number;
}

const programs = new WeakMap<GpuContext, CopyProgram>();

function compile(ctx: GpuContext, type: number, source: string): number {
  const gl = ctx.api.gl;
  const shader = gl.glCreateShader(type);
  gl.glShaderSource(shader, 1, [source], null);
  gl.glCompileShader(shader);
  const ok = new Int32Array(1);
  gl.glGetShaderiv(shader, GL.COMPILE_STATUS, ok);
  if (ok[0] === 0) {
    const log = new Uint8Array(4096);
    const length = new Int32Array(1);
    gl.glGetShaderInfoLog(shader, log.length, length, log);
    gl.glDeleteShader(shader);
    throw new SurfaceLinkError(
      'E_SYSTEM',
      `shader compilation failed on ${ctx.renderer}: ${Buffer.from(log.subarray(0, length[0])).toString()}`,
    );
  }
  return shader;
}

function copyProgram(ctx: GpuContext): CopyProgram {
  const cached = programs.get(ctx);
  if (cached) return cached;
  const gl = ctx.api.gl;
  const vs = compile(ctx, GL.VERTEX_SHADER, VERTEX_SHADER);
  let fs: number;
  try {
    fs = compile(ctx, GL.FRAGMENT_SHADER, COPY_SHADER);
  } catch (error) {
    gl.glDeleteShader(vs);
    throw error;
  }
  const program = gl.glCreateProgram();
  gl.glAttachShader(program, vs);
  gl.glAttachShader(program, fs);
  gl.glLinkProgram(program);
  gl.glDeleteShader(vs);
  gl.glDeleteShader(fs);
  const ok = new Int32Array(1);
  gl.glGetProgramiv(program, GL.LINK_STATUS, ok);
  if (ok[0] === 0) {
    const log = new Uint8Array(4096);
    const length = new Int32Array(1);
    gl.glGetProgramInfoLog(program, log.length, length, log);
    gl.glDeleteProgram(program);
    throw new SurfaceLinkError(
      'E_SYSTEM',
      `program link failed on ${ctx.renderer}: ${Buffer.from(log.subarray(0, length[0])).toString()}`,
    );
  }
  const vertexArray = new Uint32Array(1);
  const vertexBuffer = new Uint32Array(1);
  gl.glGenVertexArrays(1, vertexArray);
  gl.glGenBuffers(1, vertexBuffer);
  gl.glBindVertexArray(vertexArray[0]);
  gl.glBindBuffer(GL.ARRAY_BUFFER, vertexBuffer[0]);
  gl.glBufferData(GL.ARRAY_BUFFER, TRIANGLE.byteLength, TRIANGLE, GL.STATIC_DRAW);
  gl.glEnableVertexAttribArray(0);
  gl.glVertexAttribPointer(0, 2, GL.FLOAT, 0, 0, null);
  gl.glBindVertexArray(0);
  gl.glBindBuffer(GL.ARRAY_BUFFER, 0);
  const result = {
    program,
    source: gl.glGetUniformLocation(program, 'source'),
    origin: gl.glGetUniformLocation(program, 'origin'),
    vertexArray: vertexArray[0],
  };
  programs.set(ctx, result);
  ctx.track({
    destroy() {
      programs.delete(ctx);
      if (ctx.closed) return;
      gl.glDeleteProgram(program);
      gl.glDeleteVertexArrays(1, vertexArray);
      gl.glDeleteBuffers(1, vertexBuffer);
    },
  });
  return result;
}

/**
 * Draws `texture` (width × height) 1:1 into the bound framebuffer with its lower-left texel at
 * (x, y): a textured quad, sampled with the texture's swizzle, nothing blended. Per frame it
 * allocates nothing.
 */
export function drawTexture(ctx: GpuContext, texture: number, width: number, height: number, x = 0, y = 0): void {
  const p = copyProgram(ctx);
  const gl = ctx.api.gl;
  gl.glDisable(GL.SCISSOR_TEST);
  gl.glDisable(GL.BLEND);
  gl.glViewport(x, y, width, height);
  gl.glUseProgram(p.program);
  gl.glActiveTexture(GL.TEXTURE0);
  gl.glBindTexture(GL.TEXTURE_2D, texture);
  gl.glUniform1i(p.source, 0);
  gl.glUniform2i(p.origin, x, y);
  gl.glBindVertexArray(p.vertexArray);
  gl.glDrawArrays(GL.TRIANGLES, 0, 3);
  gl.glBindVertexArray(0);
  gl.glBindTexture(GL.TEXTURE_2D, 0);
  gl.glUseProgram(0);
}
