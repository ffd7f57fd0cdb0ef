/**
 * The MSI-X vector table and pending-bit array as the device holds them. QEMU's client
 * emulates both in its own memory and masks vectors with SET_IRQS, so for QEMU this is never
 * read; another vfio-user client may read and write it through trapped BAR accesses, and gets
 * what hardware would give: entries that keep what is written, every vector masked at reset,
 * and a read-only PBA (pending state lives with the client's eventfds, so it reads zero).
 */
import { Msix, pbaLength } from './capabilities.ts';
import type { MsixDeclaration } from './declaration.ts';

export class MsixTable {
  private readonly table: Uint8Array;
  private readonly pba: Uint8Array;
  private readonly tableAt: number;
  private readonly pbaAt: number;

  constructor(readonly declaration: MsixDeclaration) {
    this.table = new Uint8Array(declaration.vectors * Msix.ENTRY_SIZE);
    this.pba = new Uint8Array(Number(pbaLength(declaration.vectors)));
    this.tableAt = Number(declaration.table.offset);
    this.pbaAt = Number(declaration.pba.offset);
    this.reset();
  }

  /** Every entry masked, nothing pending (PCI 3.0, 6.8.2.9). */
  reset(): void {
    this.table.fill(0);
    this.pba.fill(0);
    for (let v = 0; v < this.declaration.vectors; v++) this.table[v * Msix.ENTRY_SIZE + Msix.VECTOR_CONTROL] = Msix.ENTRY_MASKED;
  }

  /** The structure an access to (bar, offset) falls in, with the offset inside it. */
  private locate(bar: number, offset: number): { bytes: Uint8Array; at: number; writable: boolean } | undefined {
    const d = this.declaration;
    if (bar === d.table.bar && offset >= this.tableAt && offset < this.tableAt + this.table.length) return { bytes: this.table, at: offset - this.tableAt, writable: true };
    if (bar === d.pba.bar && offset >= this.pbaAt && offset < this.pbaAt + this.pba.length) return { bytes: this.pba, at: offset - this.pbaAt, writable: false };
    return undefined;
  }

  /**
   * Handles the access if it falls in the table or PBA: true when it did (`into` filled). The
   * spec allows aligned dword and qword accesses only; anything else reads all-ones.
   */
  read(bar: number, offset: number, into: Uint8Array): boolean {
    const hit = this.locate(bar, offset);
    if (!hit) return false;
    if (!this.aligned(hit.at, into.length, hit.bytes)) into.fill(0xff);
    else into.set(hit.bytes.subarray(hit.at, hit.at + into.length));
    return true;
  }

  /** As read; a write to the PBA or a misaligned one is dropped. */
  write(bar: number, offset: number, data: Uint8Array): boolean {
    const hit = this.locate(bar, offset);
    if (!hit) return false;
    if (hit.writable && this.aligned(hit.at, data.length, hit.bytes)) hit.bytes.set(data, hit.at);
    return true;
  }

  private aligned(at: number, size: number, bytes: Uint8Array): boolean {
    return (size === 4 || size === 8) && at % size === 0 && at + size <= bytes.length;
  }
}
