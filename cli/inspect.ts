/**
 * `edu-plus inspect SOCKET`: connects to any vfio-user server and prints what the device
 * offers — an `lspci -vv` for vfio-user: protocol version and capabilities, device flags,
 * every region (size, flags, mmap fd, sparse areas), every irq index, and for PCI devices
 * the identity and capabilities read from config space.
 */
import { VfioUserClient } from '../protocol/client.ts';
import { CAP_SPARSE_MMAP, DeviceFlags, IrqInfoFlags, PciRegion, RegionFlags } from '../protocol/wire.ts';
import { decodeCaps, decodeSparseAreas } from '../protocol/codec.ts';
import { Errno, VfioUserError } from '../protocol/errors.ts';
import { closeQuietly } from '../protocol/native/libc.ts';
import { UsageError, parseFlags } from './flags.ts';

export const INSPECT_HELP = `Usage: tsx cli/main.ts inspect SOCKET [--json]

Connects to the vfio-user server listening on SOCKET (ours or any other), negotiates
VERSION, and prints the device's regions, interrupts and (for PCI devices) config space.
It only reads: no region is written, no DMA is mapped, and the device is not reset.

  --json   print one JSON object instead of the readable listing

A server that is already serving QEMU refuses a second client (ours answers EBUSY).`;

const REGION_NAMES = ['BAR0', 'BAR1', 'BAR2', 'BAR3', 'BAR4', 'BAR5', 'ROM', 'config', 'VGA'];
const IRQ_NAMES = ['INTx', 'MSI', 'MSI-X', 'ERR', 'REQ'];
const PCI_CAP_NAMES: Record<number, string> = { 0x01: 'Power Management', 0x05: 'MSI', 0x09: 'Vendor Specific', 0x10: 'PCI Express', 0x11: 'MSI-X' };

function flagList(value: number, names: Record<string, number>): string {
  const set = Object.entries(names).filter(([, bit]) => value & bit).map(([n]) => n);
  return set.length ? set.join('|') : '-';
}

function hex(v: number | bigint, width = 0): string {
  return `0x${v.toString(16).padStart(width, '0')}`;
}

function size(n: bigint): string {
  const units: [bigint, string][] = [[1n << 30n, 'GiB'], [1n << 20n, 'MiB'], [1n << 10n, 'KiB']];
  for (const [u, name] of units) if (n >= u && n % u === 0n) return `${n / u} ${name}`;
  return `${n} B`;
}

interface Report {
  socket: string;
  version: { major: number; minor: number; capabilities: unknown };
  device: { flags: string[]; regions: number; irqs: number };
  regions: { index: number; name: string; size: string; flags: string; mmapFd: boolean; sparse: { offset: string; size: string }[] }[];
  irqs: { index: number; name: string; count: number; flags: string }[];
  pci?: { vendor: string; device: string; revision: string; classCode: string; subsystem: string; interruptPin: number; bars: string[]; capabilities: string[] };
}

async function collect(socket: string): Promise<Report> {
  const client = VfioUserClient.connect(socket);
  try {
    const v = await client.version();
    const info = await client.deviceInfo();
    const report: Report = {
      socket,
      version: { major: v.major, minor: v.minor, capabilities: v.json ? JSON.parse(v.json) : null },
      device: {
        flags: Object.entries(DeviceFlags).filter(([, b]) => info.flags & b).map(([n]) => n),
        regions: info.numRegions,
        irqs: info.numIrqs,
      },
      regions: [],
      irqs: [],
    };
    for (let i = 0; i < info.numRegions; i++) {
      const { info: r, fd } = await client.regionInfo(i);
      if (fd !== undefined) closeQuietly([fd]);
      const sparse = decodeCaps(r)
        .filter((c) => c.id === CAP_SPARSE_MMAP.id)
        .flatMap((c) => decodeSparseAreas(c))
        .map((a) => ({ offset: hex(a.offset), size: size(a.size) }));
      report.regions.push({ index: i, name: REGION_NAMES[i] ?? `region ${i}`, size: size(r.size), flags: flagList(r.flags, RegionFlags), mmapFd: fd !== undefined, sparse });
    }
    for (let i = 0; i < info.numIrqs; i++) {
      const q = await client.irqInfo(i);
      report.irqs.push({ index: i, name: IRQ_NAMES[i] ?? `irq ${i}`, count: q.count, flags: flagList(q.flags, IrqInfoFlags) });
    }
    if (info.flags & DeviceFlags.PCI && info.numRegions > PciRegion.CONFIG) report.pci = await pciSummary(client, report.regions);
    return report;
  } finally {
    client.close();
  }
}

async function pciSummary(client: VfioUserClient, regions: Report['regions']): Promise<Report['pci']> {
  const cfg = Buffer.from(await client.regionRead(PciRegion.CONFIG, 0n, 64));
  const classCode = (cfg[0x0b]! << 16) | (cfg[0x0a]! << 8) | cfg[0x09]!;
  const bars: string[] = [];
  // Sizes come from region info; the type bits from the BAR register itself.
  for (let slot = 0; slot < 6; slot++) {
    const region = regions[slot];
    if (!region || region.size === '0 B') continue;
    const low = cfg.readUInt32LE(0x10 + slot * 4);
    const io = low & 1;
    const is64 = !io && (low & 0x6) === 0x4;
    bars.push(`BAR${slot}: ${region.size} ${io ? 'I/O' : 'memory'}${is64 ? ', 64-bit' : io ? '' : ', 32-bit'}${!io && low & 0x8 ? ', prefetchable' : ''}`);
  }
  const capabilities: string[] = [];
  if (cfg.readUInt16LE(0x06) & 0x10) {
    let at = cfg[0x34]! & 0xfc;
    const seen = new Set<number>();
    while (at && !seen.has(at) && at < 256) {
      seen.add(at);
      const head = Buffer.from(await client.regionRead(PciRegion.CONFIG, BigInt(at), 4));
      const id = head[0]!;
      let text = `[${hex(at, 2)}] ${PCI_CAP_NAMES[id] ?? `capability ${hex(id, 2)}`}`;
      if (id === 0x05) {
        const ctrl = head.readUInt16LE(2);
        text += `: ${1 << ((ctrl >> 1) & 7)} vector(s), ${ctrl & 0x80 ? '64-bit' : '32-bit'} address${ctrl & 0x100 ? ', per-vector masking' : ''}, ${ctrl & 1 ? 'enabled' : 'disabled'}`;
      }
      capabilities.push(text);
      at = head[1]! & 0xfc;
    }
  }
  return {
    vendor: hex(cfg.readUInt16LE(0), 4),
    device: hex(cfg.readUInt16LE(2), 4),
    revision: hex(cfg[0x08]!, 2),
    classCode: hex(classCode, 6),
    subsystem: `${hex(cfg.readUInt16LE(0x2c), 4)}:${hex(cfg.readUInt16LE(0x2e), 4)}`,
    interruptPin: cfg[0x3d]!,
    bars,
    capabilities,
  };
}

function print(r: Report): void {
  const out: string[] = [];
  out.push(`vfio-user device at ${r.socket}`);
  out.push(`  protocol ${r.version.major}.${r.version.minor}, server capabilities ${JSON.stringify(r.version.capabilities)}`);
  out.push(`  device flags ${r.device.flags.join('|') || '-'}, ${r.device.regions} regions, ${r.device.irqs} irq indexes`);
  if (r.pci) {
    const p = r.pci;
    out.push(`  PCI ${p.vendor.slice(2)}:${p.device.slice(2)} (rev ${p.revision.slice(2)}), class ${p.classCode}, subsystem ${p.subsystem}, interrupt pin ${p.interruptPin ? String.fromCharCode(64 + p.interruptPin) : 'none'}`);
    for (const b of p.bars) out.push(`    ${b}`);
    for (const c of p.capabilities) out.push(`    Capabilities: ${c}`);
  }
  out.push('  Regions:');
  for (const g of r.regions) {
    if (g.size === '0 B') {
      out.push(`    ${String(g.index).padStart(2)} ${g.name.padEnd(6)} (none)`);
      continue;
    }
    const sparse = g.sparse.length ? `, mmap areas ${g.sparse.map((a) => `${a.offset}+${a.size}`).join(', ')}` : '';
    out.push(`    ${String(g.index).padStart(2)} ${g.name.padEnd(6)} ${g.size.padEnd(8)} ${g.flags}${g.mmapFd ? ', fd passed' : ', trapped'}${sparse}`);
  }
  out.push('  Interrupts:');
  for (const q of r.irqs) out.push(`    ${String(q.index).padStart(2)} ${q.name.padEnd(6)} ${q.count ? `${q.count} vector(s), ${q.flags}` : '(none)'}`);
  console.log(out.join('\n'));
}

export async function inspect(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, { json: 'boolean', help: 'boolean' });
  if (flags.help) {
    console.log(INSPECT_HELP);
    return 0;
  }
  const socket = flags._[0];
  if (!socket || flags._.length > 1) throw new UsageError('inspect takes one argument: the path of a vfio-user socket (see inspect --help)');
  let report: Report;
  try {
    report = await collect(socket);
  } catch (err) {
    if (err instanceof VfioUserError && err.errno === Errno.EBUSY) {
      throw new UsageError(`${socket}: the server refused a second client (EBUSY): it is serving someone else, e.g. QEMU`);
    }
    throw err;
  }
  if (flags.json) console.log(JSON.stringify(report, null, 2));
  else print(report);
  return 0;
}
