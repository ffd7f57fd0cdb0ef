/**
 * `edu-plus vm` (`npm run vm`): one command from a kernel to a verdict. Provisions QEMU and
 * (by default) the Debian 7.3 guest kernel, builds the guest tests and an initramfs that runs
 * them, serves edu-plus in this process on a socket in a temporary directory, boots the VM
 * against it, streams the tests' KTAP, and exits with the verdict (0 pass, 1 fail, 4 all skipped).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { type EduResetMethod, RESET_METHODS } from '../device/edu-plus.ts';
import { GPU_DEVICE_ID, GPU_VENDOR_ID } from '../device/gpu.ts';
import { buildGuestTests } from '../guest-tests/build.ts';
import { createLogger } from '../protocol/log.ts';
import { maxDmaMapsForRam } from '../protocol/dma.ts';
import { VfioUserServer } from '../protocol/server.ts';
import { DEFAULT_SERVER_LIMITS } from '../protocol/version.ts';
import { cacheDir, checkoutCacheDir, progress } from '../qemu-configs/cache.ts';
import { KernelInputError, concatInitramfs, customKernel, findHeadersInclude } from '../qemu-configs/custom-kernel.ts';
import { DECLARED_SKIP, defaultInit, guestModules } from '../qemu-configs/guest-init.ts';
import { buildInitramfs } from '../qemu-configs/initramfs.ts';
import { type GuestKernel, provisionKernel } from '../qemu-configs/provision-kernel.ts';
import { type QemuInstall, provisionQemu } from '../qemu-configs/provision-qemu.ts';
import { kvmUsable, qemuArgs, shellQuote, vfioUserDevice } from '../qemu-configs/qemu-command.ts';
import { ModuleResolutionError } from '../qemu-configs/module-index.ts';
import { runVm } from '../qemu-configs/run-vm.ts';
import { SELFTESTS_DMA_MASK, SELFTESTS_GUEST_DIR, SELFTESTS_MEMORY_MIB, hugePageArgs } from '../qemu-configs/selftests.ts';
import { ModuleBuildError, checkVfioTree, prepareVfioSrc } from '../qemu-configs/vfio-src-build.ts';
import { formatEvent } from '../trace/format.ts';
import { DEVICE_KINDS, defaultSocketPath } from './devices.ts';
import { UsageError, parseFlags } from './flags.ts';
import { writeJunit } from './junit.ts';
import { BIND_DEVICE, BYO_DIR, ExtraTestInputError, joinExtras, planByo } from './vm-extra-tests.ts';
import { SELFTESTS_TIMEOUT_S, checkSelftestsOption, choosePrograms } from './vm-selftests.ts';
import { DEFAULT_MEMORY_MIB, DEFAULT_TIMEOUT_S, guestTestNames, vmHelp } from './vm-help.ts';
import { EXIT_FAIL, EXIT_PASS, type ExpectedModule, TEST_BEGIN, TEST_END, formatVerdict, judge, judgeModules, parseModuleReports, testCommand } from './vm-report.ts';

const FLAGS = {
  kernel: 'string',
  modules: 'string',
  initrd: 'string',
  headers: 'string',
  'vfio-src': 'string',
  tests: 'string',
  add: 'list',
  run: 'list',
  junit: 'string',
  selftests: 'optional',
  shell: 'boolean',
  iommu: 'string',
  trace: 'boolean',
  'print-cmdline': 'boolean',
  verbose: 'boolean',
  timeout: 'string',
  memory: 'string',
  'shared-memory': 'boolean',
  'no-shared-memory': 'boolean',
  'socket-path': 'string',
  reset: 'string',
  devices: 'string',
  help: 'boolean',
} as const;

export interface VmOptions {
  kernel?: string;
  /** A modules tree, 'none', or undefined. */
  modules?: string;
  initrd?: string;
  headers?: string;
  /** A kernel tree whose drivers/vfio/pci the out-of-tree loop builds. */
  vfioSrc?: string;
  /** Our programs to run; undefined: the default (all, or none with --run). */
  tests?: string[];
  /** --add paths and --run commands (a developer's own tests). */
  add: string[];
  run: string[];
  junit?: string;
  /** --selftests: a kernel tree, '' for Debian's source, undefined when not asked. */
  selftests?: string;
  shell: boolean;
  iommu: 'intel' | 'virtio';
  trace: boolean;
  printCmdline: boolean;
  verbose: boolean;
  timeoutSeconds: number;
  memoryMiB: number;
  sharedMemory: boolean;
  socketPath?: string;
  reset: EduResetMethod;
  /** Shipped device names (cli/devices.ts), attached in this order. */
  devices: string[];
  help: boolean;
}

/** Parses and checks `vm`'s flags; every mistake is a UsageError (exit 2) that says what to do. */
export function parseVmFlags(argv: string[]): VmOptions {
  const f = parseFlags(argv, FLAGS);
  if (f._.length > 0) throw new UsageError(`vm takes no arguments, only options (got "${f._.join(' ')}"); see vm --help`);
  const iommu = f.iommu ?? 'intel';
  if (iommu !== 'intel' && iommu !== 'virtio') throw new UsageError(`--iommu must be intel or virtio (got "${iommu}")`);
  if (f['shared-memory'] && f['no-shared-memory']) throw new UsageError('--shared-memory and --no-shared-memory contradict each other; give one');
  const timeoutSeconds = f.timeout === undefined ? (f.selftests !== undefined ? SELFTESTS_TIMEOUT_S : DEFAULT_TIMEOUT_S) : Number(f.timeout);
  if (!/^\d+$/.test(f.timeout ?? '1') || timeoutSeconds < 1 || timeoutSeconds > 86_400) {
    throw new UsageError(`--timeout takes whole seconds from 1 to 86400 (got "${f.timeout}")`);
  }
  if (f.shell && f.timeout !== undefined) throw new UsageError('--shell has no timeout (you leave with poweroff -f or Ctrl-A X); drop --timeout');
  const memoryMiB = f.memory === undefined ? (f.selftests !== undefined ? SELFTESTS_MEMORY_MIB : DEFAULT_MEMORY_MIB) : Number(f.memory);
  if (!/^\d+$/.test(f.memory ?? '1') || memoryMiB < 128 || memoryMiB > 65_536) {
    throw new UsageError(`--memory takes MiB, a whole number from 128 to 65536 (got "${f.memory}")`);
  }
  const reset = (f.reset ?? 'flr') as EduResetMethod;
  if (!RESET_METHODS.includes(reset)) throw new UsageError(`--reset must be ${RESET_METHODS.join(', ')} (got "${f.reset}")`);
  const devices = (f.devices ?? 'edu-plus').split(',').map((d) => d.trim());
  const unknownDevice = devices.find((d) => !(d in DEVICE_KINDS));
  if (unknownDevice !== undefined) throw new UsageError(`--devices: no device "${unknownDevice}"; devices: ${Object.keys(DEVICE_KINDS).join(', ')}`);
  if (new Set(devices).size !== devices.length) throw new UsageError(`--devices names a device twice (${devices.join(',')}): each is attached once`);
  if (devices.length > 1 && f['socket-path'] !== undefined) throw new UsageError('--socket-path names one socket: with several --devices each gets its own in a temporary directory; drop --socket-path');
  let tests: string[] | undefined;
  if (f.tests !== undefined) {
    tests = [...new Set(f.tests.split(',').map((t) => t.trim()).filter((t) => t !== ''))];
    if (tests.length === 0) throw new UsageError('--tests needs at least one test name, e.g. --tests edu_plus_basic,edu_functions');
  }
  if (f.shell && f.run !== undefined) throw new UsageError('--run runs a command and judges it; --shell gives you the prompt instead: give one (--add works with both)');
  if (f.junit !== undefined && !existsSync(dirname(resolve(f.junit)))) {
    throw new UsageError(`--junit ${f.junit}: the directory ${dirname(resolve(f.junit))} does not exist; create it or pick another path`);
  }
  if (f.modules !== undefined && f.kernel === undefined) {
    throw new UsageError('--modules belongs to --kernel: give the kernel image those modules were built with (--kernel arch/x86/boot/bzImage)');
  }
  if (f.kernel !== undefined && f.modules === undefined && f.initrd === undefined) {
    throw new UsageError('--kernel needs its modules: --modules DIR (DIR as given to make modules_install INSTALL_MOD_PATH=DIR), ' +
      '--initrd FILE (an initramfs that holds them), or --modules none if vfio, vfio_iommu_type1 and vfio-pci are built in');
  }
  const vfioSrc = f['vfio-src'];
  if (vfioSrc !== undefined && (f.kernel !== undefined || f.modules !== undefined || f.headers !== undefined)) {
    throw new UsageError('--vfio-src builds vfio-pci for the provisioned Debian kernel and takes the UAPI headers from TREE: ' +
      'drop --kernel/--modules/--headers (for your own kernel, build the modules there and pass --kernel with --modules)');
  }
  return {
    kernel: f.kernel,
    modules: f.modules,
    vfioSrc,
    initrd: f.initrd,
    headers: f.headers,
    tests,
    add: f.add ?? [],
    run: f.run ?? [],
    junit: f.junit,
    selftests: f.selftests,
    shell: f.shell === true,
    iommu,
    trace: f.trace === true,
    printCmdline: f['print-cmdline'] === true,
    verbose: f.verbose === true,
    timeoutSeconds,
    memoryMiB,
    sharedMemory: f['no-shared-memory'] !== true,
    socketPath: f['socket-path'],
    reset,
    devices,
    help: f.help === true,
  };
}

/** The shell command line for QEMU, with the environment it needs (the prefix's module dir). */
export function qemuCommandLine(qemu: QemuInstall, args: string[]): string {
  const cmd = qemu.command(args);
  const env = Object.entries(cmd.env)
    .filter(([k, v]) => v !== undefined && process.env[k] !== v)
    .map(([k, v]) => `${k}=${shellQuote([v!])}`);
  return [...env, shellQuote([cmd.file, ...cmd.args])].join(' ');
}

/** /init's first command: which kernel really booted (shown in the progress output). */
const KERNEL_MARKER = 'EDU_PLUS_VM_KERNEL';
const KERNEL_REPORT = `echo "${KERNEL_MARKER} $(uname -r)"`;

/** Guest-side lines worth showing outside a test program even without --verbose. */
const NOTABLE = /edu-plus init:|Kernel panic|BUG:|Oops|general protection fault|Call Trace/;

interface Prepared {
  qemu: QemuInstall;
  kernel: GuestKernel;
  /** Every program /init runs, in order: ours, then the developer's (--run). */
  tests: string[];
  /** The developer's programs: judged by exit status when they print no KTAP. */
  exitStatusJudged: string[];
  initrd: string;
  /** The VFIO modules the initramfs carries, to check against what the guest loaded. */
  packed: ExpectedModule[];
}

/** Provisions QEMU and the kernel, builds the tests and the initramfs. */
async function prepare(opts: VmOptions, step: ReturnType<typeof progress>): Promise<Prepared> {
  // Cheap checks on the user's files first, so a typo fails in milliseconds (exit 2).
  let custom: Awaited<ReturnType<typeof customKernel>> | undefined;
  let includeDir: string | undefined;
  let byo: ReturnType<typeof planByo>;
  try {
    byo = planByo(opts.add, opts.run, guestTestNames());
    if (opts.selftests !== undefined) checkSelftestsOption(opts.selftests);
    if (opts.kernel !== undefined) {
      custom = await customKernel({ image: opts.kernel, modules: opts.modules === 'none' ? undefined : opts.modules });
    }
    if (opts.headers !== undefined) includeDir = findHeadersInclude(opts.headers);
    if (opts.initrd !== undefined) await concatInitramfs(opts.initrd, Buffer.alloc(0));
    if (opts.vfioSrc !== undefined) await checkVfioTree(opts.vfioSrc, (await provisionKernel()).version);
  } catch (err) {
    if (err instanceof KernelInputError || err instanceof ExtraTestInputError) throw new UsageError(err.message);
    throw err;
  }
  if (custom !== undefined) {
    const k = custom.kernel;
    step.info(`kernel ${k.vmlinuz} (release ${custom.imageRelease ?? 'unreadable from the image'})` +
      (custom.hasModules ? `, modules ${k.modulesDir}` : opts.initrd !== undefined ? ', modules from --initrd' : ', modules built in'));
  }

  let vfioSrc: Awaited<ReturnType<typeof prepareVfioSrc>> | undefined;
  if (opts.vfioSrc !== undefined) {
    vfioSrc = await prepareVfioSrc(opts.vfioSrc, (await provisionKernel()).version);
    includeDir = vfioSrc.includeDir;
  }
  const testsDir = includeDir === undefined
    ? undefined
    : join(cacheDir(), 'guest-tests-headers', createHash('sha256').update(includeDir).digest('hex').slice(0, 16));
  if (includeDir !== undefined) step.info(`building the guest tests against ${includeDir} into ${testsDir}`);
  const builtPromise = buildGuestTests({ includeDir, outDir: testsDir });
  builtPromise.catch(() => undefined);
  // Sequential: the two provisioning steps share the private apt state on a cold cache.
  const qemu = await provisionQemu();
  step.info(`QEMU ${qemu.version} (${qemu.source === 'cache' ? `provisioned, ${qemu.prefix}` : qemu.source})`);
  const kernel = custom?.kernel ?? (await provisionKernel());
  if (custom === undefined) step.info(`kernel ${kernel.version} (provisioned, ${kernel.vmlinuz})`);
  const built = await builtPromise;

  const available = built.binaries.map((b) => b.name);
  if (available.length === 0) throw new Error('guest-tests/ built no test programs');
  const { tests, selftests } = await choosePrograms({ tests: opts.tests, selftests: opts.selftests, includeDir, ours: available, byo }, step);
  const extra = selftests === undefined ? byo : joinExtras(byo, selftests);
  if (tests.length > 0) step.info(`guest tests: ${opts.shell ? `${tests.join(', ')} (in /tests for the shell)` : tests.join(', ')}`);
  if (byo.files.length > 0) step.info(`added to ${BYO_DIR}: ${byo.files.length} file${byo.files.length === 1 ? '' : 's'}`);
  if (selftests !== undefined) step.info(`selftests: ${selftests.names.join(', ')}`);

  const withModules = custom === undefined || custom.hasModules;
  const modules = guestModules(opts.iommu);
  const loadModules = custom !== undefined && !custom.hasModules && opts.initrd === undefined ? [] : modules;
  const bind = extra.commands.length > 0 ? [BIND_DEVICE] : [];
  const commands = opts.shell ? shellCommands(tests, extra.setup) : [KERNEL_REPORT, ...tests.map(testCommand), ...bind, ...extra.setup, ...extra.commands];
  const key = createHash('sha256')
    .update(JSON.stringify([kernel.vmlinuz, kernel.modulesDir, includeDir, opts.initrd && resolve(opts.initrd), opts.iommu, opts.shell, tests, extra, vfioSrc?.build.buildDir]))
    .digest('hex')
    .slice(0, 12);
  const dir = join(checkoutCacheDir(), 'images', 'vm');
  const ours = join(dir, `${kernel.version}-${key}.cpio.gz`);
  const summary = await buildInitramfs({
    kernel,
    modules: withModules ? modules : [],
    moduleOverrides: vfioSrc?.build.modules,
    files: [...tests.map((name) => ({ src: built.binaries.find((b) => b.name === name)!.path, dest: `/tests/${name}` })), ...extra.files],
    init: defaultInit({ modules: loadModules, commands }),
    output: ours,
  });
  let initrd = ours;
  if (opts.initrd !== undefined) {
    initrd = join(dir, `${kernel.version}-${key}-with-initrd.cpio`);
    const combined = await concatInitramfs(resolve(opts.initrd), readFileSync(ours));
    await mkdir(dir, { recursive: true });
    await writeFile(`${initrd}.tmp-${process.pid}`, combined);
    await rename(`${initrd}.tmp-${process.pid}`, initrd);
    step.info(`initramfs: ${opts.initrd} followed by ours: ${initrd}`);
  }
  return { qemu, kernel, tests: [...tests, ...extra.names], exitStatusJudged: extra.names, initrd, packed: summary.packed };
}

const hex4 = (id: number) => id.toString(16).padStart(4, '0');

/** /init's commands for --shell: bind the device, put the tests (ours, yours, the selftests) on PATH, hand over a shell. */
function shellCommands(tests: string[], setup: string[]): string[] {
  return [
    KERNEL_REPORT,
    `export PATH=$PATH:/tests:${BYO_DIR}:${SELFTESTS_GUEST_DIR} HOME=/root PS1="edu-plus-guest:\\w# "`,
    BIND_DEVICE,
    // With --devices …,gpu: new_id binds the gpu too (nothing happens when it is not attached).
    `echo "${hex4(GPU_VENDOR_ID)} ${hex4(GPU_DEVICE_ID)}" > /sys/bus/pci/drivers/vfio-pci/new_id 2>/dev/null`,
    ...setup,
    `echo "edu-plus vm: tests in /tests (on PATH): ${tests.join(' ')}; yours (--add) in ${BYO_DIR}"`,
    'echo "edu-plus vm: edu-plus is $EDU_PLUS_BDF; bound to vfio-pci: $(ls /sys/bus/pci/drivers/vfio-pci | grep : | tr \'\\n\' \' \')"',
    'echo "edu-plus vm: leave with: poweroff -f   (or Ctrl-A X to kill the VM)"',
    'cd /root && setsid cttyhack sh',
  ];
}

export async function vm(argv: string[]): Promise<number> {
  const opts = parseVmFlags(argv);
  if (opts.help) {
    console.log(vmHelp());
    return 0;
  }
  const step = progress('vm');
  let prepared: Prepared;
  try {
    prepared = await prepare(opts, step);
  } catch (err) {
    // An ambiguous modules tree is wrong input (exit 2); a compile error in the developer's
    // tree fails the run with the compiler's words, no stack trace of ours.
    if (err instanceof ModuleResolutionError) throw new UsageError(err.message);
    if (!(err instanceof ModuleBuildError)) throw err;
    console.error(`edu-plus: ${err.message}`);
    return EXIT_FAIL;
  }
  const { qemu, kernel, tests, initrd } = prepared;

  const tempDir = opts.socketPath === undefined && !opts.printCmdline ? mkdtempSync(join(tmpdir(), 'edu-plus-vm-')) : undefined;
  // The first device keeps --socket-path and npm start's default; every other one its own.
  const socketPaths = opts.devices.map((name, i) =>
    i === 0 && opts.socketPath !== undefined ? resolve(opts.socketPath) : tempDir !== undefined ? join(tempDir, `${name}.sock`) : defaultSocketPath(name));
  const args = qemuArgs({
    kernel: kernel.vmlinuz,
    initrd,
    socketPath: socketPaths[0],
    extraDevices: socketPaths.slice(1).map(vfioUserDevice),
    memoryMiB: opts.memoryMiB,
    sharedMemory: opts.sharedMemory,
    iommu: opts.iommu,
    append: opts.selftests !== undefined ? hugePageArgs(opts.memoryMiB) : undefined,
  });
  if (opts.shell) {
    // mon:stdio multiplexes QEMU's monitor onto the terminal: Ctrl-A X quits, Ctrl-A C the monitor.
    const serial = args.indexOf('-serial');
    args[serial + 1] = 'mon:stdio';
  }
  const cmdline = qemuCommandLine(qemu, args);
  if (opts.printCmdline) {
    console.log(cmdline);
    const serveCommand = opts.devices.length === 1 && opts.devices[0] === 'edu-plus'
      ? `npm start -- --socket-path ${socketPaths[0]}`
      : `npm start -- ${opts.devices.map((name, i) => `--device ${name},socket=${socketPaths[i]}`).join(' ')}`;
    step.info(`this command line expects the device${opts.devices.length > 1 ? 's' : ''} on ${socketPaths.join(', ')}: start ${opts.devices.length > 1 ? 'them' : 'it'} first with ${serveCommand}`);
    return 0;
  }
  if (opts.verbose) process.stderr.write(`[edu-plus] vm: QEMU command line:\n${cmdline}\n`);

  const serverLog: string[] = [];
  const eol = opts.shell && process.stderr.isTTY ? '\r\n' : '\n';
  const servers: VfioUserServer[] = [];
  const log = createLogger({
    level: opts.verbose ? 'info' : 'warn',
    write: (line) => {
      serverLog.push(line);
      if (opts.verbose) process.stderr.write(`device: ${line}${eol}`);
    },
  });
  const closeServers = async () => {
    for (const server of servers.splice(0)) {
      if (server.hasClient) await Promise.race([server.clientGone(), new Promise((r) => setTimeout(r, 2000))]);
      server.close();
    }
    if (tempDir !== undefined) rmSync(tempDir, { recursive: true, force: true });
  };
  try {
    opts.devices.forEach((name, i) => {
      const options = new Map<string, string | true>();
      if (name === 'edu-plus') options.set('reset', opts.reset);
      if (name === 'edu-plus' && opts.selftests !== undefined) options.set('dma-mask', `0x${SELFTESTS_DMA_MASK.toString(16)}`);
      const { factory } = DEVICE_KINDS[name]!.build(options, (key) => `--${key}`);
      servers.push(VfioUserServer.listen({
        socketPath: socketPaths[i]!,
        device: factory,
        // Room for all of guest RAM mapped page by page (a vIOMMU sends one DMA_MAP per page).
        limits: { ...DEFAULT_SERVER_LIMITS, maxDmaMaps: maxDmaMapsForRam(BigInt(opts.memoryMiB) << 20n) },
        log: opts.devices.length > 1 ? log.child(name) : log,
      }));
    });
  } catch (err) {
    await closeServers();
    throw err;
  }
  const unsubscribe: (() => void)[] = [];
  if (opts.trace) {
    let start: bigint | null = null;
    servers.forEach((server, i) => {
      const who = opts.devices.length > 1 ? `${opts.devices[i]} ` : '';
      unsubscribe.push(server.trace.subscribe((e) => {
        start ??= e.timeNs;
        process.stderr.write(`trace ${who}${formatEvent(e, start)}${eol}`);
      }));
    });
  }
  try {
    if (opts.shell) return await runShell(qemu, args, tests, step);
    return await runTests(opts, prepared, args, step, serverLog);
  } finally {
    for (const stop of unsubscribe) stop();
    await closeServers();
  }
}

async function runTests(
  opts: VmOptions,
  { qemu, tests, exitStatusJudged, packed }: Prepared,
  args: string[],
  step: ReturnType<typeof progress>,
  serverLog: string[],
): Promise<number> {
  step.info(`booting (${kvmUsable() ? 'KVM' : 'TCG'}, ${opts.memoryMiB} MiB, ${opts.iommu}-iommu, ` +
    `${opts.sharedMemory ? 'shared' : 'private'} guest RAM; timeout ${opts.timeoutSeconds} s)`);
  let inTest = false;
  let interrupted = false;
  const onSigint = (): void => {
    // QEMU, in our process group, gets the same SIGINT and exits; runVm then returns.
    interrupted = true;
  };
  process.on('SIGINT', onSigint);
  let run;
  try {
    run = await runVm({
      qemu,
      args,
      timeoutMs: opts.timeoutSeconds * 1000,
      onLine: (line) => {
        const begin = line.includes(TEST_BEGIN);
        const end = line.includes(TEST_END);
        if (opts.verbose) {
          console.log(line);
        } else if (begin) {
          console.log(`# ---- ${line.slice(line.indexOf(TEST_BEGIN) + TEST_BEGIN.length).trim()} ----`);
        } else if (end) {
          const status = /(\d+)\s*$/.exec(line)?.[1];
          if (status !== undefined && status !== '0') console.log(`# (exit status ${status})`);
        } else if ((inTest && !line.startsWith(DECLARED_SKIP)) || NOTABLE.test(line)) {
          // Declared skips (one line per case) are summed up in the summary instead.
          console.log(line);
        }
        if (begin) inTest = true;
        if (end) inTest = false;
        const release = new RegExp(`${KERNEL_MARKER} (\\S+)`).exec(line)?.[1];
        if (release !== undefined) step.info(`guest /init started on kernel ${release}; running ${tests.join(', ')}`);
      },
      // QEMU's warnings (e.g. "Could not enable error recovery", normal for vfio-user) are
      // shown live with --verbose, else only when the run failed.
      onStderrLine: (line) => {
        if (opts.verbose) process.stderr.write(`qemu: ${line}\n`);
      },
    });
  } finally {
    process.off('SIGINT', onSigint);
  }
  const verdict = judge({
    lines: run.lines,
    tests,
    timedOut: run.timedOut,
    timeoutSeconds: opts.timeoutSeconds,
    initSeen: run.initMs !== undefined,
    doneSeen: run.doneMs !== undefined,
    exitStatusJudged,
  });
  const provenance = judgeModules(parseModuleReports(run.lines), packed, { developerModules: opts.modules !== undefined || opts.vfioSrc !== undefined, vfioSrc: opts.vfioSrc });
  verdict.problems.push(...provenance.problems);
  if (provenance.problems.length > 0) verdict.exitCode = EXIT_FAIL;
  if (interrupted) {
    verdict.problems.push('interrupted (Ctrl-C)');
    verdict.exitCode = EXIT_FAIL;
  }
  if (verdict.exitCode !== EXIT_PASS && !opts.verbose) {
    if (run.initMs === undefined || run.timedOut || verdict.problems.length > 0) {
      process.stderr.write('[edu-plus] vm: the last guest console lines:\n');
      for (const line of run.lines.slice(-30)) process.stderr.write(`  | ${line}\n`);
    }
    if (run.stderrLines.length > 0) {
      process.stderr.write('[edu-plus] vm: QEMU\'s stderr:\n');
      for (const line of run.stderrLines.slice(-20)) process.stderr.write(`  | ${line}\n`);
    }
    const warnings = serverLog.slice(-20);
    if (warnings.length > 0) {
      process.stderr.write('[edu-plus] vm: the device\'s warnings:\n');
      for (const line of warnings) process.stderr.write(`  | ${line}\n`);
    }
  }
  step.done(`QEMU exited (${run.signal ?? `status ${run.exitCode}`}) after ${(run.durationMs / 1000).toFixed(1)} s; ` +
    `/init at ${run.initMs === undefined ? '-' : `${(run.initMs / 1000).toFixed(1)} s`}`);
  for (const line of [...provenance.lines, ...formatVerdict(verdict)]) console.log(line);
  if (opts.junit !== undefined) {
    await writeJunit(opts.junit, verdict);
    step.info(`JUnit XML written to ${opts.junit}`);
  }
  return verdict.exitCode;
}

/** QEMU on the user's terminal (-serial mon:stdio), no timeout, until the guest powers off. */
async function runShell(qemu: QemuInstall, args: string[], tests: string[], step: ReturnType<typeof progress>): Promise<number> {
  step.info(`booting an interactive guest: tests in /tests (on PATH): ${tests.join(', ')}`);
  step.info('leave with `poweroff -f` in the guest, or Ctrl-A X to kill the VM');
  const cmd = qemu.command(args);
  const onSigint = (): void => undefined; // the terminal is QEMU's; Ctrl-C belongs to the guest
  process.on('SIGINT', onSigint);
  try {
    const code = await new Promise<number | null>((resolvePromise, reject) => {
      const child = spawn(cmd.file, cmd.args, { env: cmd.env, stdio: 'inherit' });
      child.on('error', (err) => reject(new Error(`could not start QEMU (${cmd.file}): ${err.message}`)));
      child.on('close', (c) => resolvePromise(c));
    });
    step.done(`QEMU exited with status ${code}`);
    return code === 0 ? EXIT_PASS : EXIT_FAIL;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
