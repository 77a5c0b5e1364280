/*
 * testkern: a tiny freestanding test guest for surfacelink's QEMU bridge tests.
 *
 * A 32-bit multiboot ELF, booted with `qemu-system-x86_64 -kernel testkern.elf -append "..."`
 * (QEMU's multiboot loader; SeaBIOS has already assigned the PCI BARs). No interrupts: the CPU
 * runs with IF=0 and everything is polled. Built by test/qemu/build-guest.sh (gcc -m32
 * -ffreestanding, no libc; only gcc's own <stdint.h>).
 *
 * Command line (space separated key=value; unknown tokens are ignored):
 *   w=, h=        mode size (default 1024x768; width rounded down to a multiple of 8, at least 400x200)
 *   mode=         static | box | full | all (default box), see the picture contract below
 *   fps=          frames per second, 1..240 (default 60), paced with PIT channel 0
 *   resize=WxH@N  switch to WxH at frame N (the first frame drawn at WxH); the R key (scancode 0x13)
 *                 toggles between the initial size and WxH (default 800x600, or 1024x768 when that is
 *                 the initial size)
 *   flip=0|1      double buffering by page flipping (Bochs DISPI Y offset; default 1): every presented
 *                 frame is complete. flip=0 draws in place (VGA dirty tracking then reports bands, and
 *                 a screendump or listener may catch a frame half drawn). Off when the VRAM cannot
 *                 hold two frames, and always off on vmware (no panning there: in place, so only
 *                 mode static, or a guest at rest, is tear-free on vmware).
 *   bpp=32|16     DISPI pixel depth (default 32). At 16 QEMU shadows the VRAM into a surface of its
 *                 own (which QEMU 10 can hand to a D-Bus listener as a memfd, ScanoutMap) and every
 *                 colour appears as colour & 0xF8FCF8.
 *   cursor=0|1    vmware only: drive the SVGA hardware cursor (default 0), see "Hardware cursor".
 *
 * Display devices: the first PCI device of class 0x03 on bus 0. VMware SVGA-II (15ad:0405) is
 * driven through its own registers (I/O BAR0: index port +0, value port +1, 32-bit accesses;
 * framebuffer BAR1; command FIFO BAR2). Everything else (std VGA 1234:1111, virtio-vga, qxl-vga)
 * gets a Bochs DISPI mode through ports 0x1CE/0x1CF with BAR0 as the linear framebuffer.
 *
 * PICTURE CONTRACT (test/qemu/pattern.ts implements exactly this; change both together).
 * Colours are 0xRRGGBB; W x H is the mode; N the frame number the bar shows; BAR = 32.
 *   bg(x, y)    = ((x >> 8) & 15) << 20 | ((y >> 8) & 15) << 16 | (y & 255) << 8 | (x & 255)
 *   anim(N)     = (N & 255) * 0x010101
 *   base(x, y)  = bg(x, y) ^ anim(N)  where mode == full and y >= 40, or mode == all (y >= BAR)
 *               = bg(x, y)            otherwise
 *   box         (mode box only) 64x64, colour 0xFFFF00, top-left (bx, by):
 *                 sx = W - 64, t = 4N mod 2sx, bx = t < sx ? t : 2sx - t
 *                 sy = H - BAR - 64, u = 3N mod 2sy, by = BAR + (u < sy ? u : 2sy - u)
 *   mouse       16x16 square at (mx, my), over the box; colour 0xFF0000 | (left ? 0x0000FF : 0)
 *               | (right ? 0x00C000 : 0) | (middle ? 0x003000 : 0). mx in [0, W-16], my in [BAR, H-16],
 *               initially (W/2 - 8, H/2 - 8); PS/2 motion moves it (screen y grows downwards).
 *   bar         rows y < BAR: background 0x202020 (mode all: 0x202020 ^ (N & 255)), and blocks of
 *               6x10 pixels, slot s at x = 8 + 8s, row A at y = 4, row B at y = 18; a set bit is
 *               0xFFFFFF, a clear one 0x404040; fields most significant bit first:
 *                 row A: slots 0-31 N; 33-34 mode (static 0, box 1, full 2, all 3); 36 bpp16
 *                 row B: slots 0-7 last PS/2 keyboard byte; 9-16 keyboard bytes received (mod 256);
 *                        18-29 mx; 31-42 my; 44 left, 45 right, 46 middle button
 *   bpp=16      every colour above is shown as colour & 0xF8FCF8 (QEMU expands 5:6:5 without
 *               replicating bits).
 * N counts frame ticks from 0. In static mode the picture is drawn at tick 0 and redrawn only
 * when input or a resize changes it, so its bar shows the tick of the last redraw.
 *
 * Debug console (port 0xE9; QEMU -debugcon file:...), one event per line:
 *   testkern <cmdline>  |  pci <bb:dd.f> <vendor>:<device> <std|vmware>  |  timer pit 1193182 Hz
 *   mode <W>x<H> bpp <B> flip <0|1>  |  frame <N>  |  fps <F> (once a second)
 *   key 0x<byte> (every keyboard byte, make and break)  |  mouse <mx> <my> <buttons>
 *   resize <W>x<H>  |  cursor caps <0|1>  |  cursor define <image>  |  error <text>
 *
 * Hardware cursor (vmware, cursor=1): a 32x32 cursor defined with SVGA_CMD_DEFINE_CURSOR (AND
 * mask 1 bpp + 32 bpp XOR image, which QEMU turns into ARGB: alpha 0xFF where the mask bit is 0),
 * image 0 or 1 (the C key, scancode 0x2e, toggles), see cursor_pixel(). Its position follows the
 * mouse square's top-left: SVGA_REG_CURSOR_X/Y then SVGA_REG_CURSOR_ON=1, which is what makes QEMU
 * call dpy_mouse_set (a D-Bus listener's MouseSet). QEMU 7.2 reports SVGA_CAP_CURSOR only while a
 * display listener that takes cursors is registered and does not replay the cursor to listeners
 * registered later, so the guest polls the capability every frame and defines the cursor again when
 * it appears (a second 7.2 listener gets no cursor until the C key redefines it). QEMU 10.0 always
 * reports the capability and replays the last cursor and position to new listeners.
 */
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

#define BAR 32
#define BOX 64
#define SQ 16
#define MIN_W 400
#define MIN_H 200
#define MAX_W 2560
#define MAX_H 1600

/* ---- entry: multiboot header, stack, call kmain(magic, info) ---------------------------- */
__asm__(".section .multiboot, \"a\"\n"
        ".align 4\n"
        ".long 0x1BADB002, 0, -0x1BADB002\n"
        ".text\n"
        ".globl _start\n"
        "_start:\n"
        "  mov $stack_top, %esp\n"
        "  cld\n"
        "  push %ebx\n"
        "  push %eax\n"
        "  call kmain\n"
        "1: cli\n"
        "  hlt\n"
        "  jmp 1b\n");
static u8 stack[32768] __attribute__((aligned(16), used));
__asm__(".globl stack_top\n .set stack_top, stack + 32768\n");

/* gcc may emit calls to these even freestanding. */
void *memset(void *d, int c, unsigned n) {
  u8 *p = d;
  while (n--) *p++ = (u8)c;
  return d;
}
void *memcpy(void *d, const void *s, unsigned n) {
  u8 *p = d;
  const u8 *q = s;
  while (n--) *p++ = *q++;
  return d;
}

/* ---- port I/O ----------------------------------------------------------------------- */
static inline void outb(u16 p, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(p)); }
static inline void outw(u16 p, u16 v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(p)); }
static inline void outl(u16 p, u32 v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(p)); }
static inline u8 inb(u16 p) {
  u8 v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p));
  return v;
}
static inline u16 inw(u16 p) {
  u16 v;
  __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(p));
  return v;
}
static inline u32 inl(u16 p) {
  u32 v;
  __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p));
  return v;
}

/* ---- debug console (port 0xE9) ----------------------------------------------------------- */
static void dputc(char c) { outb(0xE9, (u8)c); }
static void dputs(const char *s) {
  while (*s) dputc(*s++);
}
static void dputu(u32 v) {
  char b[11];
  int i = 0;
  do {
    b[i++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (i) dputc(b[--i]);
}
static void dputx(u32 v, int digits) {
  while (digits--) dputc("0123456789abcdef"[(v >> (4 * digits)) & 15]);
}

/* ---- command line ------------------------------------------------------------------------ */
static u32 cfg_w = 1024, cfg_h = 768, cfg_fps = 60, cfg_flip = 1, cfg_bpp = 32, cfg_cursor = 0;
static u32 cfg_mode = 1; /* static 0, box 1, full 2, all 3 */
static u32 alt_w, alt_h, resize_at = 0xFFFFFFFF;

static int streq(const char *a, const char *b, int n) {
  for (int i = 0; i < n; i++)
    if (a[i] != b[i]) return 0;
  return b[n] == 0;
}
/* Parses a decimal number at *p, advancing it. */
static u32 parse_u(const char **p) {
  u32 v = 0;
  while (**p >= '0' && **p <= '9') v = v * 10 + (u32)(*(*p)++ - '0');
  return v;
}
static void parse_cmdline(const char *s) {
  while (*s) {
    while (*s == ' ') s++;
    const char *key = s;
    while (*s && *s != '=' && *s != ' ') s++;
    if (*s != '=') continue;
    int klen = (int)(s - key);
    const char *v = ++s;
    while (*s && *s != ' ') s++;
    int vlen = (int)(s - v);
    const char *p = v;
    if (streq(key, "w", klen)) cfg_w = parse_u(&p);
    else if (streq(key, "h", klen)) cfg_h = parse_u(&p);
    else if (streq(key, "fps", klen)) cfg_fps = parse_u(&p);
    else if (streq(key, "flip", klen)) cfg_flip = parse_u(&p);
    else if (streq(key, "bpp", klen)) cfg_bpp = parse_u(&p);
    else if (streq(key, "cursor", klen)) cfg_cursor = parse_u(&p);
    else if (streq(key, "mode", klen)) {
      if (streq(v, "static", vlen)) cfg_mode = 0;
      else if (streq(v, "box", vlen)) cfg_mode = 1;
      else if (streq(v, "full", vlen)) cfg_mode = 2;
      else if (streq(v, "all", vlen)) cfg_mode = 3;
      else dputs("error unknown mode\n");
    } else if (streq(key, "resize", klen)) {
      alt_w = parse_u(&p);
      if (*p == 'x') p++;
      alt_h = parse_u(&p);
      if (*p == '@') {
        p++;
        resize_at = parse_u(&p);
      }
    }
  }
}
static void clamp_size(u32 *w, u32 *h) {
  *w &= ~7u;
  if (*w < MIN_W) *w = MIN_W;
  if (*w > MAX_W) *w = MAX_W;
  if (*h < MIN_H) *h = MIN_H;
  if (*h > MAX_H) *h = MAX_H;
}

/* ---- PCI (configuration mechanism 1) ----------------------------------------------------- */
static u32 pci_read(u32 bdf, u32 reg) {
  outl(0xCF8, 0x80000000u | bdf << 8 | (reg & 0xFC));
  return inl(0xCFC);
}
static void pci_write(u32 bdf, u32 reg, u32 v) {
  outl(0xCF8, 0x80000000u | bdf << 8 | (reg & 0xFC));
  outl(0xCFC, v);
}

/* ---- display state ----------------------------------------------------------------------- */
enum { DEV_DISPI, DEV_VMWARE };
static u32 dev;
static volatile u8 *vram;  /* linear framebuffer */
static u32 vram_size;      /* bytes */
static u32 W, H, stride;   /* current mode */
static u32 bpp = 32;       /* 32 or 16 */
static u32 flip;           /* double buffering in use */
static u32 back;           /* buffer being drawn (0 or 1) */

/* Bochs DISPI */
static void dispi_w(u16 i, u16 v) {
  outw(0x1CE, i);
  outw(0x1CF, v);
}
static u16 dispi_r(u16 i) {
  outw(0x1CE, i);
  return inw(0x1CF);
}

/* VMware SVGA-II */
static u16 svga_port;
static volatile u32 *fifo;
static u32 fifo_min, fifo_max;
enum {
  SVGA_REG_ID = 0, SVGA_REG_ENABLE = 1, SVGA_REG_WIDTH = 2, SVGA_REG_HEIGHT = 3, SVGA_REG_BPP = 7,
  SVGA_REG_BYTES_PER_LINE = 12, SVGA_REG_FB_START = 13, SVGA_REG_VRAM_SIZE = 15, SVGA_REG_CAPABILITIES = 17,
  SVGA_REG_MEM_START = 18, SVGA_REG_MEM_SIZE = 19, SVGA_REG_CONFIG_DONE = 20, SVGA_REG_SYNC = 21,
  SVGA_REG_BUSY = 22, SVGA_REG_CURSOR_ID = 24, SVGA_REG_CURSOR_X = 25, SVGA_REG_CURSOR_Y = 26,
  SVGA_REG_CURSOR_ON = 27,
};
#define SVGA_ID_2 0x90000002u
#define SVGA_CAP_CURSOR (1u << 5)
#define SVGA_CMD_UPDATE 1
#define SVGA_CMD_DEFINE_CURSOR 19
static void svga_w(u32 i, u32 v) {
  outl(svga_port, i);
  outl(svga_port + 1, v);
}
static u32 svga_r(u32 i) {
  outl(svga_port, i);
  return inl(svga_port + 1);
}
/* Lets QEMU run the FIFO now (synchronously, in the port write). */
static void svga_sync(void) {
  svga_w(SVGA_REG_SYNC, 1);
  while (svga_r(SVGA_REG_BUSY)) {
  }
}
/* Appends one command of n words, publishing NEXT_CMD only once it is complete. */
static void fifo_cmd(const u32 *words, u32 n) {
  u32 avail_bytes = fifo_max - fifo_min;
  u32 next = fifo[2], stop = fifo[3];
  u32 used = next >= stop ? next - stop : avail_bytes - (stop - next);
  if (used + 4 * n + 4 >= avail_bytes) {
    svga_sync();
    next = fifo[2];
  }
  for (u32 i = 0; i < n; i++) {
    fifo[next / 4] = words[i];
    next += 4;
    if (next >= fifo_max) next = fifo_min;
  }
  fifo[2] = next;
}
static void svga_update(u32 x, u32 y, u32 w, u32 h) {
  u32 cmd[5] = {SVGA_CMD_UPDATE, x, y, w, h};
  fifo_cmd(cmd, 5);
}

/* ---- picture ----------------------------------------------------------------------------- */
struct state {
  u32 frame, mode, key, keys, mx, my, buttons;
};
static struct state st;

static inline u32 bg(u32 x, u32 y) {
  return ((x >> 8) & 15) << 20 | ((y >> 8) & 15) << 16 | (y & 255) << 8 | (x & 255);
}
static inline u32 anim_xor(u32 y) {
  if ((st.mode == 2 && y >= 40) || (st.mode == 3 && y >= BAR)) return (st.frame & 255) * 0x010101u;
  return 0;
}
static inline u16 rgb565(u32 c) { return (u16)((c >> 8 & 0xF800) | (c >> 5 & 0x07E0) | (c >> 3 & 0x001F)); }
static inline volatile u8 *row_ptr(u32 y) { return vram + (back * H + y) * stride; }

/* base(x, y) over a rectangle (clipped below the bar). */
static void fill_base(u32 x0, u32 y0, u32 w, u32 h) {
  if (y0 < BAR) {
    if (y0 + h <= BAR) return;
    h -= BAR - y0;
    y0 = BAR;
  }
  if (x0 >= W || y0 >= H) return;
  if (x0 + w > W) w = W - x0;
  if (y0 + h > H) h = H - y0;
  for (u32 y = y0; y < y0 + h; y++) {
    u32 rowc = (((y >> 8) & 15) << 16 | (y & 255) << 8) ^ anim_xor(y);
    volatile u8 *r = row_ptr(y);
    if (bpp == 32) {
      volatile u32 *p = (volatile u32 *)r + x0;
      for (u32 x = x0; x < x0 + w; x++) *p++ = rowc ^ (((x >> 8) & 15) << 20 | (x & 255));
    } else {
      volatile u16 *p = (volatile u16 *)r + x0;
      for (u32 x = x0; x < x0 + w; x++) *p++ = rgb565(rowc ^ (((x >> 8) & 15) << 20 | (x & 255)));
    }
  }
}
static void fill_rect(u32 x0, u32 y0, u32 w, u32 h, u32 c) {
  if (x0 >= W || y0 >= H) return;
  if (x0 + w > W) w = W - x0;
  if (y0 + h > H) h = H - y0;
  u16 c16 = rgb565(c);
  for (u32 y = y0; y < y0 + h; y++) {
    volatile u8 *r = row_ptr(y);
    if (bpp == 32) {
      volatile u32 *p = (volatile u32 *)r + x0;
      for (u32 i = 0; i < w; i++) p[i] = c;
    } else {
      volatile u16 *p = (volatile u16 *)r + x0;
      for (u32 i = 0; i < w; i++) p[i] = c16;
    }
  }
}
static void draw_bits(u32 row_y, u32 slot, u32 value, u32 nbits) {
  for (u32 i = 0; i < nbits; i++) {
    u32 bit = (value >> (nbits - 1 - i)) & 1;
    fill_rect(8 + 8 * (slot + i), row_y, 6, 10, bit ? 0xFFFFFF : 0x404040);
  }
}
static void draw_bar(void) {
  fill_rect(0, 0, W, BAR, st.mode == 3 ? 0x202020 ^ (st.frame & 255) : 0x202020);
  draw_bits(4, 0, st.frame, 32);
  draw_bits(4, 33, st.mode, 2);
  draw_bits(4, 36, bpp == 16, 1);
  draw_bits(18, 0, st.key, 8);
  draw_bits(18, 9, st.keys, 8);
  draw_bits(18, 18, st.mx, 12);
  draw_bits(18, 31, st.my, 12);
  draw_bits(18, 44, st.buttons & 1, 1);
  draw_bits(18, 45, (st.buttons >> 1) & 1, 1);
  draw_bits(18, 46, (st.buttons >> 2) & 1, 1);
}
static void box_pos(u32 n, u32 *bx, u32 *by) {
  u32 sx = W - BOX, sy = H - BAR - BOX;
  u32 t = (4 * n) % (2 * sx), u = (3 * n) % (2 * sy);
  *bx = t < sx ? t : 2 * sx - t;
  *by = BAR + (u < sy ? u : 2 * sy - u);
}
static u32 mouse_colour(u32 b) {
  return 0xFF0000 | (b & 1 ? 0x0000FF : 0) | (b & 2 ? 0x00C000 : 0) | (b & 4 ? 0x003000 : 0);
}

/* What each buffer holds, so a frame redraws only what changed since that buffer's last frame. */
struct drawn {
  u32 valid, box, bx, by, mx, my;
};
static struct drawn drawn[2];

/* Damage for vmware's SVGA_CMD_UPDATE (no dirty tracking once the SVGA FIFO is configured). */
static u32 dmg[8][4], ndmg;
static void damage(u32 x, u32 y, u32 w, u32 h) {
  if (ndmg < 8) {
    dmg[ndmg][0] = x, dmg[ndmg][1] = y, dmg[ndmg][2] = w, dmg[ndmg][3] = h;
    ndmg++;
  }
}

/* Draws the current state into the back buffer. */
static void render(void) {
  struct drawn *d = &drawn[back];
  ndmg = 0;
  if (!d->valid) {
    fill_base(0, BAR, W, H - BAR);
    damage(0, 0, W, H);
  } else {
    if (st.mode == 2) fill_base(0, 40, W, H - 40), damage(0, 40, W, H - 40);
    if (st.mode == 3) fill_base(0, BAR, W, H - BAR), damage(0, BAR, W, H - BAR);
    if (d->box) fill_base(d->bx, d->by, BOX, BOX), damage(d->bx, d->by, BOX, BOX);
    fill_base(d->mx, d->my, SQ, SQ), damage(d->mx, d->my, SQ, SQ);
    damage(0, 0, W, BAR);
  }
  d->box = st.mode == 1;
  if (d->box) {
    box_pos(st.frame, &d->bx, &d->by);
    fill_rect(d->bx, d->by, BOX, BOX, 0xFFFF00);
    damage(d->bx, d->by, BOX, BOX);
  }
  d->mx = st.mx, d->my = st.my;
  fill_rect(st.mx, st.my, SQ, SQ, mouse_colour(st.buttons));
  damage(st.mx, st.my, SQ, SQ);
  draw_bar();
  d->valid = 1;
}

/* Shows the back buffer. */
static void present(void) {
  if (dev == DEV_VMWARE) {
    for (u32 i = 0; i < ndmg; i++) svga_update(dmg[i][0], dmg[i][1], dmg[i][2], dmg[i][3]);
    svga_sync();
  } else if (flip) {
    dispi_w(9 /* Y_OFFSET */, (u16)(back * H));
    back ^= 1;
  }
}

/* ---- mode setting ------------------------------------------------------------------------ */
static void set_mode(u32 w, u32 h) {
  clamp_size(&w, &h);
  if (dev == DEV_VMWARE) {
    svga_w(SVGA_REG_WIDTH, w);
    svga_w(SVGA_REG_HEIGHT, h);
    svga_w(SVGA_REG_BPP, 32);
    stride = svga_r(SVGA_REG_BYTES_PER_LINE);
    if (stride < w * 4) stride = w * 4;
    flip = 0;
  } else {
    dispi_w(4, 0);                       /* ENABLE = 0 */
    dispi_w(1, (u16)w);                  /* XRES */
    dispi_w(2, (u16)h);                  /* YRES */
    dispi_w(3, (u16)bpp);                /* BPP */
    dispi_w(6, (u16)w);                  /* VIRT_WIDTH */
    dispi_w(4, 0x01 | 0x40);             /* ENABLED | LFB_ENABLED (clears the VRAM) */
    w = dispi_r(1), h = dispi_r(2);
    stride = w * (bpp / 8);
    flip = cfg_flip && 2 * h * stride <= vram_size;
    dispi_w(9, 0); /* Y_OFFSET */
    back = flip ? 1 : 0;
  }
  W = w, H = h;
  if (st.mx > W - SQ) st.mx = W - SQ;
  if (st.my > H - SQ) st.my = H - SQ;
  drawn[0].valid = drawn[1].valid = 0;
  dputs("mode "), dputu(W), dputc('x'), dputu(H), dputs(" bpp "), dputu(bpp), dputs(" flip "), dputu(flip);
  dputc('\n');
}

/* ---- hardware cursor (vmware) ------------------------------------------------------------ */
static u32 cursor_image, cursor_caps;
/* ARGB of cursor image k at (x, y): 0 is transparent (pattern.ts cursorImage() mirrors this). */
static u32 cursor_pixel(u32 k, u32 x, u32 y) {
  u32 opaque = k == 0 ? x <= y : (x < 4 || x >= 28 || y < 4 || y >= 28);
  if (!opaque) return 0;
  return 0xFF000000u | (x * 8) << 16 | (y * 8) << 8 | (k == 0 ? 0x40 : 0xC0);
}
static u32 cursor_cmd[8 + 32 + 1024];
static void cursor_define(void) {
  u32 k = cursor_image, *c = cursor_cmd;
  c[0] = SVGA_CMD_DEFINE_CURSOR, c[1] = 0 /* id */, c[2] = k ? 15 : 0, c[3] = k ? 15 : 0; /* hot spot */
  c[4] = 32, c[5] = 32, c[6] = 1 /* AND mask depth */, c[7] = 32 /* XOR image depth */;
  for (u32 y = 0; y < 32; y++) {
    /* AND mask: 1 = transparent; QEMU reads bytes MSB first (x = 0 is bit 7 of the first byte). */
    u32 m = 0;
    for (u32 x = 0; x < 32; x++)
      if (!cursor_pixel(k, x, y)) m |= 0x80u >> (x & 7) << (8 * (x >> 3));
    c[8 + y] = m;
    for (u32 x = 0; x < 32; x++) c[40 + y * 32 + x] = cursor_pixel(k, x, y) & 0xFFFFFF;
  }
  fifo_cmd(c, 8 + 32 + 1024);
  svga_sync();
  dputs("cursor define "), dputu(k), dputc('\n');
}
static void cursor_move(void) {
  svga_w(SVGA_REG_CURSOR_ID, 0);
  svga_w(SVGA_REG_CURSOR_X, st.mx);
  svga_w(SVGA_REG_CURSOR_Y, st.my);
  svga_w(SVGA_REG_CURSOR_ON, 1); /* SVGA_CURSOR_ON_SHOW: QEMU calls dpy_mouse_set here */
}
static void cursor_poll(void) {
  u32 caps = (svga_r(SVGA_REG_CAPABILITIES) & SVGA_CAP_CURSOR) ? 1 : 0;
  if (caps == cursor_caps) return;
  cursor_caps = caps;
  dputs("cursor caps "), dputu(caps), dputc('\n');
  if (caps) cursor_define(), cursor_move();
}

/* ---- PS/2 (polled) ----------------------------------------------------------------------- */
static void kbc_wait_write(void) {
  for (u32 i = 0; i < 1000000 && (inb(0x64) & 2); i++) {
  }
}
static int kbc_read_timeout(u8 *v) {
  for (u32 i = 0; i < 1000000; i++)
    if (inb(0x64) & 1) {
      *v = inb(0x60);
      return 1;
    }
  return 0;
}
static void mouse_cmd(u8 c) {
  u8 ack = 0;
  kbc_wait_write();
  outb(0x64, 0xD4);
  kbc_wait_write();
  outb(0x60, c);
  if (!kbc_read_timeout(&ack) || ack != 0xFA) dputs("error mouse ack 0x"), dputx(ack, 2), dputc('\n');
}
static void ps2_init(void) {
  u8 v;
  while (inb(0x64) & 1) (void)inb(0x60); /* drain */
  kbc_wait_write();
  outb(0x64, 0xA8); /* enable the aux port */
  kbc_wait_write();
  outb(0x64, 0x20); /* read the command byte */
  if (!kbc_read_timeout(&v)) v = 0x45;
  v &= (u8)~0x30; /* keyboard and aux clocks on; translation (0x40) as the BIOS left it */
  v &= (u8)~0x03; /* no IRQs: polled */
  kbc_wait_write();
  outb(0x64, 0x60);
  kbc_wait_write();
  outb(0x60, v);
  mouse_cmd(0xF6); /* defaults */
  mouse_cmd(0xF4); /* enable streaming */
}

static u32 dirty;   /* the picture must be redrawn (static mode) */
static u32 toggle;  /* R pressed: toggle the resolution */
static u8 pkt[3];
static u32 npkt;

static void on_key(u8 b) {
  st.key = b;
  st.keys = (st.keys + 1) & 255;
  dirty = 1;
  dputs("key 0x"), dputx(b, 2), dputc('\n');
  if (b == 0x13) toggle = 1;
  if (b == 0x2E && dev == DEV_VMWARE && cfg_cursor) {
    cursor_image ^= 1;
    cursor_define();
    cursor_move();
  }
}
static void on_mouse_byte(u8 b) {
  if (npkt == 0 && !(b & 0x08)) return; /* resync: the first byte always has bit 3 set */
  pkt[npkt++] = b;
  if (npkt < 3) return;
  npkt = 0;
  int dx = pkt[1] - ((pkt[0] & 0x10) ? 256 : 0);
  int dy = pkt[2] - ((pkt[0] & 0x20) ? 256 : 0);
  int x = (int)st.mx + dx, y = (int)st.my - dy;
  if (x < 0) x = 0;
  if (x > (int)(W - SQ)) x = (int)(W - SQ);
  if (y < BAR) y = BAR;
  if (y > (int)(H - SQ)) y = (int)(H - SQ);
  st.mx = (u32)x, st.my = (u32)y, st.buttons = pkt[0] & 7;
  dirty = 1;
  dputs("mouse "), dputu(st.mx), dputc(' '), dputu(st.my), dputc(' '), dputu(st.buttons), dputc('\n');
  if (dev == DEV_VMWARE && cfg_cursor) cursor_move();
}
static void poll_input(void) {
  for (;;) {
    u8 s = inb(0x64);
    if (!(s & 1)) return;
    u8 b = inb(0x60);
    if (s & 0x20) on_mouse_byte(b);
    else on_key(b);
  }
}

/* ---- timing ------------------------------------------------------------------------------ */
/* PIT channel 0 as a free-running 1.193182 MHz counter (mode 2, period 65536, read by latching;
 * IF=0, so its IRQ 0 is never taken). It runs on QEMU's virtual clock, like QEMU's own timers. (A
 * TSC calibrated against PIT channel 2 came out between 2.1 and 3.5 GHz from run to run under TCG
 * on a nested host, and the frame rate with it.) Must be read at least every 55 ms (a frame's
 * drawing takes far less). */
#define PIT_HZ 1193182u
static u16 pit_last;
static u64 pit_ticks;
static u16 pit_read(void) {
  outb(0x43, 0x00); /* latch channel 0 */
  u8 lo = inb(0x40);
  u8 hi = inb(0x40);
  return (u16)(lo | hi << 8);
}
static void pit_init(void) {
  outb(0x43, 0x34); /* channel 0, lobyte/hibyte, mode 2, binary */
  outb(0x40, 0);
  outb(0x40, 0); /* 0 = 65536 */
  pit_last = pit_read();
}
static u64 ticks(void) {
  u16 c = pit_read();
  pit_ticks += (u16)(pit_last - c);
  pit_last = c;
  return pit_ticks;
}

/* ---- main -------------------------------------------------------------------------------- */
static int find_display(void) {
  for (u32 d = 0; d < 32; d++) {
    u32 bdf = d << 3;
    u32 id = pci_read(bdf, 0);
    if ((id & 0xFFFF) == 0xFFFF) continue;
    if ((pci_read(bdf, 8) >> 24) != 0x03) continue;
    pci_write(bdf, 4, pci_read(bdf, 4) | 0x3); /* I/O and memory decoding on */
    u32 vendor = id & 0xFFFF, device = id >> 16;
    dev = (vendor == 0x15AD && device == 0x0405) ? DEV_VMWARE : DEV_DISPI;
    dputs("pci 00:"), dputx(d, 2), dputs(".0 "), dputx(vendor, 4), dputc(':'), dputx(device, 4);
    dputs(dev == DEV_VMWARE ? " vmware\n" : " std\n");
    if (dev == DEV_VMWARE) {
      svga_port = (u16)(pci_read(bdf, 0x10) & ~3u);
      svga_w(SVGA_REG_ID, SVGA_ID_2);
      if (svga_r(SVGA_REG_ID) != SVGA_ID_2) {
        dputs("error vmware svga id 2 refused\n");
        return 0;
      }
      vram = (volatile u8 *)svga_r(SVGA_REG_FB_START);
      vram_size = svga_r(SVGA_REG_VRAM_SIZE);
      fifo = (volatile u32 *)svga_r(SVGA_REG_MEM_START);
      fifo_min = 1024;
      fifo_max = svga_r(SVGA_REG_MEM_SIZE);
      fifo[0] = fifo_min, fifo[1] = fifo_max, fifo[2] = fifo_min, fifo[3] = fifo_min;
    } else {
      vram = (volatile u8 *)(pci_read(bdf, 0x10) & ~0xFu);
      outw(0x1CE, 0);
      u16 idv = inw(0x1CF);
      if (idv < 0xB0C0 || idv > 0xB0CF) {
        dputs("error no Bochs DISPI interface\n");
        return 0;
      }
      vram_size = (u32)dispi_r(10 /* VIDEO_MEMORY_64K */) << 16;
    }
    return 1;
  }
  dputs("error no display device (PCI class 0x03) on bus 0\n");
  return 0;
}

void kmain(u32 magic, const u32 *mbi) {
  const char *cmdline = "";
  if (magic == 0x2BADB002 && (mbi[0] & 4)) cmdline = (const char *)mbi[4];
  dputs("testkern "), dputs(cmdline), dputc('\n');
  parse_cmdline(cmdline);
  clamp_size(&cfg_w, &cfg_h);
  if (cfg_fps < 1) cfg_fps = 1;
  if (cfg_fps > 240) cfg_fps = 240;
  if (!alt_w) {
    alt_w = (cfg_w == 800 && cfg_h == 600) ? 1024 : 800;
    alt_h = (cfg_w == 800 && cfg_h == 600) ? 768 : 600;
  }
  if (!find_display()) return;
  bpp = (dev == DEV_DISPI && cfg_bpp == 16) ? 16 : 32;

  pit_init();
  u32 per_frame = PIT_HZ / cfg_fps, per_frame_rem = PIT_HZ % cfg_fps, rem = 0;
  dputs("timer pit "), dputu(PIT_HZ), dputs(" Hz\n");

  st.mode = cfg_mode;
  st.mx = st.my = 0xFFFF; /* set_mode() clamps: re-centred below */
  set_mode(cfg_w, cfg_h);
  st.mx = W / 2 - SQ / 2, st.my = H / 2 - SQ / 2;
  if (cfg_cursor && dev != DEV_VMWARE) dputs("error cursor=1 needs the vmware display (-vga vmware)\n");
  if (dev == DEV_VMWARE) {
    svga_w(SVGA_REG_ENABLE, 1);
    svga_w(SVGA_REG_CONFIG_DONE, 1);
    if (cfg_cursor) cursor_poll();
  }
  ps2_init();

  u32 initial_w = W, initial_h = H, fps_count = 0;
  u64 next = ticks(), second = next + PIT_HZ;
  dirty = 1;
  for (st.frame = 0;; st.frame++) {
    if (st.frame == resize_at || toggle) {
      u32 to_alt = toggle ? (W == initial_w && H == initial_h) : 1;
      toggle = 0;
      u32 nw = to_alt ? alt_w : initial_w, nh = to_alt ? alt_h : initial_h;
      dputs("resize "), dputu(nw), dputc('x'), dputu(nh), dputc('\n');
      set_mode(nw, nh);
      if (dev == DEV_VMWARE && cfg_cursor) cursor_move(); /* the square may have been clamped */
      dirty = 1;
    }
    if (st.mode != 0 || dirty) {
      /* Each buffer remembers what it holds (drawn[]), so drawing into a stale one is still exact. */
      render();
      present();
      dirty = 0;
    }
    dputs("frame "), dputu(st.frame), dputc('\n');
    fps_count++;
    if (dev == DEV_VMWARE && cfg_cursor) cursor_poll();
    next += per_frame;
    rem += per_frame_rem;
    if (rem >= cfg_fps) rem -= cfg_fps, next++;
    u64 now;
    while ((now = ticks()) < next) poll_input();
    if (now - next > 4 * per_frame) next = now; /* fell behind: do not try to catch up */
    if (now >= second) {
      dputs("fps "), dputu(fps_count), dputc('\n');
      fps_count = 0;
      second += PIT_HZ;
      if (now > second) second = now + PIT_HZ;
    }
  }
}
