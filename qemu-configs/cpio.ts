// A writer for the cpio "newc" format (magic 070701), the only format the Linux initramfs
// unpacker reads (Documentation/driver-api/early-userspace/buffer-format.rst). The machine has
// no cpio binary, and the format is small enough to write directly.
//
// Each entry is a 110-byte ASCII header (magic + 13 fields of 8 hex digits), the NUL-terminated
// name padded so header+name is a multiple of 4, then the data padded to a multiple of 4. The
// archive ends with an entry named "TRAILER!!!".
//
// The kernel does not create missing parent directories, so this writer adds them (mode 0755)
// before the first entry below them. All entries are owned by root with mtime 0, which keeps
// images reproducible.

const MAGIC = '070701';
const HEADER_SIZE = 110;
const TRAILER = 'TRAILER!!!';

/** File type bits of st_mode (include/uapi/linux/stat.h). */
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;

interface HeaderFields {
  mode: number;
  nlink: number;
  size: number;
  rdevMajor?: number;
  rdevMinor?: number;
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

/** "/a//b/" → "a/b"; rejects empty paths and ".." so an image cannot escape its root. */
export function normaliseArchivePath(path: string): string {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0) throw new Error(`cpio: empty path ${JSON.stringify(path)}`);
  if (parts.includes('..')) throw new Error(`cpio: path ${JSON.stringify(path)} contains ".."`);
  return parts.join('/');
}

export class CpioWriter {
  private readonly chunks: Buffer[] = [];
  private readonly paths = new Map<string, 'dir' | 'other'>();
  private nextIno = 1;
  private finished = false;

  /** True when `path` was already added (explicitly or as an implied parent directory). */
  has(path: string): boolean {
    return this.paths.has(normaliseArchivePath(path));
  }

  directory(path: string, mode = 0o755): void {
    const name = normaliseArchivePath(path);
    const existing = this.paths.get(name);
    if (existing === 'dir') return;
    if (existing !== undefined) throw new Error(`cpio: ${name} already exists and is not a directory`);
    this.parents(name);
    this.paths.set(name, 'dir');
    this.entry(name, { mode: S_IFDIR | (mode & 0o7777), nlink: 2, size: 0 }, Buffer.alloc(0));
  }

  file(path: string, data: Uint8Array, mode = 0o644): void {
    const name = this.claim(path);
    this.entry(name, { mode: S_IFREG | (mode & 0o7777), nlink: 1, size: data.length }, data);
  }

  symlink(path: string, target: string): void {
    const name = this.claim(path);
    const data = Buffer.from(target, 'utf8');
    this.entry(name, { mode: S_IFLNK | 0o777, nlink: 1, size: data.length }, data);
  }

  /** A character device node (e.g. /dev/console 5:1, which init's stdio needs before devtmpfs). */
  charDevice(path: string, major: number, minor: number, mode = 0o600): void {
    const name = this.claim(path);
    this.entry(name, { mode: S_IFCHR | (mode & 0o7777), nlink: 1, size: 0, rdevMajor: major, rdevMinor: minor },
      Buffer.alloc(0));
  }

  /** Appends the trailer and returns the whole (uncompressed) archive. */
  finish(): Buffer {
    if (!this.finished) {
      this.entry(TRAILER, { mode: 0, nlink: 1, size: 0 }, Buffer.alloc(0), 0);
      this.finished = true;
    }
    return Buffer.concat(this.chunks);
  }

  private claim(path: string): string {
    const name = normaliseArchivePath(path);
    if (this.paths.has(name)) throw new Error(`cpio: ${name} added twice`);
    this.parents(name);
    this.paths.set(name, 'other');
    return name;
  }

  private parents(name: string): void {
    const slash = name.lastIndexOf('/');
    if (slash > 0) this.directory(name.slice(0, slash));
  }

  private entry(name: string, h: HeaderFields, data: Uint8Array, ino = this.nextIno++): void {
    if (this.finished) throw new Error('cpio: archive already finished');
    const nameBytes = Buffer.from(`${name}\0`, 'utf8');
    const hex = (n: number): string => {
      if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`cpio: field value ${n} out of range for ${name}`);
      return n.toString(16).padStart(8, '0');
    };
    const fields = [
      ino, h.mode, 0 /* uid */, 0 /* gid */, h.nlink, 0 /* mtime */, h.size,
      0 /* devmajor */, 0 /* devminor */, h.rdevMajor ?? 0, h.rdevMinor ?? 0,
      nameBytes.length, 0 /* check: only used by the 070702 "crc" variant */,
    ];
    const header = Buffer.from(MAGIC + fields.map(hex).join(''), 'ascii');
    this.chunks.push(header, nameBytes, Buffer.alloc(pad4(HEADER_SIZE + nameBytes.length)));
    if (data.length > 0) this.chunks.push(Buffer.from(data.buffer, data.byteOffset, data.length), Buffer.alloc(pad4(data.length)));
  }
}
