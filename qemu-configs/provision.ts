// Pre-fetches everything the end-to-end tests need (QEMU >= 10.1, the guest kernel, busybox)
// into the cache and prints where it is.
//
//   tsx qemu-configs/provision.ts            provision (network only on the first run)
//   tsx qemu-configs/provision.ts --refresh  re-resolve the newest kernel of the line
//   tsx qemu-configs/provision.ts --smoke    also boot a guest with QEMU's edu device and check it
//
// Paths go to stdout, progress to stderr.

import { cacheDir } from './cache.ts';
import { attachLine, kvmUsable } from './qemu-command.ts';
import { provisionBusybox } from './provision-busybox.ts';
import { provisionKernel } from './provision-kernel.ts';
import { provisionQemu } from './provision-qemu.ts';
import { smokeBoot } from './smoke.ts';

const USAGE = 'usage: tsx qemu-configs/provision.ts [--refresh] [--smoke] [--verbose]';

async function main(argv: string[]): Promise<number> {
  const flags = new Set(argv);
  for (const flag of flags) {
    if (!['--refresh', '--smoke', '--verbose', '--help'].includes(flag)) {
      process.stderr.write(`unknown option ${flag}\n${USAGE}\n`);
      return 2;
    }
  }
  if (flags.has('--help')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }

  const started = performance.now();
  // Sequential on purpose: the steps share the private apt state and its locks.
  const qemu = await provisionQemu();
  const kernel = await provisionKernel({ refresh: flags.has('--refresh') });
  const busybox = await provisionBusybox();
  const seconds = ((performance.now() - started) / 1000).toFixed(2);

  const sample = qemu.command(['--version']);
  const out = [
    `cache:        ${cacheDir()}`,
    `qemu:         ${qemu.version} (${qemu.source}${qemu.prefix !== '' ? `, prefix ${qemu.prefix}` : ''})`,
    `qemu command: ${sample.file} ${sample.args.slice(0, -1).join(' ')}`,
    `kernel:       ${kernel.version}`,
    `vmlinuz:      ${kernel.vmlinuz}`,
    `modules:      ${kernel.modulesDir}`,
    `busybox:      ${busybox.binary}`,
    `accelerator:  ${kvmUsable() ? 'kvm' : 'tcg (no usable KVM)'}`,
    `attach with:  ${attachLine('/path/to/edu-plus.sock')}`,
    `provisioned in ${seconds} s`,
  ];
  process.stdout.write(`${out.join('\n')}\n`);

  if (!flags.has('--smoke')) return 0;
  const verbose = flags.has('--verbose');
  const smoke = await smokeBoot({
    qemu,
    kernel,
    onLine: (line) => {
      if (verbose || line.startsWith('smoke: ') || line.startsWith('EDU_PLUS_')) process.stdout.write(`  guest| ${line}\n`);
    },
  });
  const r = smoke.run;
  process.stdout.write([
    `smoke boot:   ${smoke.ok ? 'ok' : 'FAILED'} (exit ${r.exitCode}${r.timedOut ? ', timed out' : ''})`,
    `  first console output ${r.firstGuestOutputMs ?? '-'} ms, /init ${r.initMs ?? '-'} ms, ` +
      `done ${r.doneMs ?? '-'} ms, QEMU exit ${r.durationMs} ms`,
    ...smoke.problems.map((p) => `  problem: ${p}`),
    ...(smoke.ok ? [] : r.stderrLines.map((l) => `  qemu stderr| ${l}`)),
    '',
  ].join('\n'));
  return smoke.ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`[edu-plus] provisioning failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
