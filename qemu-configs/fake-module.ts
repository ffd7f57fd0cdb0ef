// Test fixture: a minimal kernel module as an ELF64 LE relocatable with a null section,
// .modinfo, optionally .note.gnu.build-id, and .shstrtab, built here from the ELF spec so the
// readers are not tested against their own assumptions.

/** A fake .ko whose .modinfo holds `modinfo` (key=value strings) and, if given, a GNU build ID (hex). */
export function fakeModule(modinfo: string[], buildId?: string): Buffer {
  const info = Buffer.from(modinfo.map((s) => `${s}\0`).join(''));
  const note = buildId === undefined ? Buffer.alloc(0) : buildIdNote(Buffer.from(buildId, 'hex'));
  const names = ['', '.modinfo', '.shstrtab', ...(buildId === undefined ? [] : ['.note.gnu.build-id'])];
  const shstrtab = Buffer.from(names.map((n) => `${n}\0`).join(''));
  const nameAt = (n: string): number => names.slice(0, names.indexOf(n)).reduce((sum, x) => sum + x.length + 1, 0);
  const infoOff = 64;
  const noteOff = infoOff + info.length;
  const strOff = noteOff + note.length;
  const shoff = Math.ceil((strOff + shstrtab.length) / 8) * 8;
  const shnum = buildId === undefined ? 3 : 4;
  const out = Buffer.alloc(shoff + shnum * 64);
  out.write('\x7fELF', 0, 'latin1');
  out[4] = 2; // ELFCLASS64
  out[5] = 1; // ELFDATA2LSB
  out[6] = 1; // EV_CURRENT
  out.writeUInt16LE(1, 0x10); // ET_REL
  out.writeUInt16LE(62, 0x12); // EM_X86_64
  out.writeBigUInt64LE(BigInt(shoff), 0x28);
  out.writeUInt16LE(64, 0x34); // e_ehsize
  out.writeUInt16LE(64, 0x3a); // e_shentsize
  out.writeUInt16LE(shnum, 0x3c); // e_shnum
  out.writeUInt16LE(2, 0x3e); // e_shstrndx
  info.copy(out, infoOff);
  note.copy(out, noteOff);
  shstrtab.copy(out, strOff);
  const sh = (i: number, name: number, type: number, off: number, size: number): void => {
    const at = shoff + i * 64;
    out.writeUInt32LE(name, at);
    out.writeUInt32LE(type, at + 4);
    out.writeBigUInt64LE(BigInt(off), at + 24);
    out.writeBigUInt64LE(BigInt(size), at + 32);
  };
  sh(1, nameAt('.modinfo'), 1 /* PROGBITS */, infoOff, info.length);
  sh(2, nameAt('.shstrtab'), 3 /* STRTAB */, strOff, shstrtab.length);
  if (buildId !== undefined) sh(3, nameAt('.note.gnu.build-id'), 7 /* NOTE */, noteOff, note.length);
  return out;
}

/** An ELF note as the kernel exposes it in /sys/module/<m>/notes: namesz, descsz, type 3, "GNU\0", desc. */
export function buildIdNote(desc: Buffer): Buffer {
  const head = Buffer.alloc(16);
  head.writeUInt32LE(4, 0);
  head.writeUInt32LE(desc.length, 4);
  head.writeUInt32LE(3, 8); // NT_GNU_BUILD_ID
  head.write('GNU\0', 12, 'latin1');
  return Buffer.concat([head, desc, Buffer.alloc((4 - (desc.length % 4)) % 4)]);
}
