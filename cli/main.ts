/**
 * The edu-plus command line. `npm start` runs `serve`; more subcommands join as they land.
 */
import { reportFailure, wantsStack } from './failures.ts';
import { UsageError } from './flags.ts';
import { INSPECT_HELP, inspect } from './inspect.ts';
import { SERVE_HELP, serve } from './serve.ts';
import { TRACE_HELP, trace } from './trace.ts';
import { vm } from './vm.ts';
import { vmHelp } from './vm-help.ts';

const HELP = `edu-plus: an edu-plus PCI device served over vfio-user, for QEMU guests.

Usage: edu-plus <command> [options]
       (npx edu-plus … from a clone after npm install; npm start = edu-plus serve)

Commands:
  serve     serve edu-plus on a Unix socket (what \`npm start\` runs); --device serves
            other devices or several at once (gpu, your own module)
  inspect   connect to any vfio-user socket and print what the device offers
  trace     watch a running edu-plus server's events, or dump its registers (its trace socket)
  vm        boot a test VM with edu-plus attached, run the guest tests, exit with the verdict
            (\`npm run vm -- --kernel bzImage --modules DIR\` for your own kernel)
  help      show this help, or \`help COMMAND\` for a command's options

Tests: \`npm test\` runs the type check, the unit tests and the end-to-end VM test (it
provisions QEMU and a guest kernel into ~/.cache/edu-plus on first use).

${SERVE_HELP}`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(rest[0] === 'serve' ? SERVE_HELP : rest[0] === 'inspect' ? INSPECT_HELP : rest[0] === 'trace' ? TRACE_HELP : rest[0] === 'vm' ? vmHelp() : HELP);
      return 0;
    case 'serve':
      return serve(rest);
    case 'inspect':
      return inspect(rest);
    case 'trace':
      return trace(rest);
    case 'vm':
      return vm(rest);
    default:
      throw new UsageError(`unknown command "${command}"; commands: serve, inspect, trace, vm, help`);
  }
}

const argv = process.argv.slice(2);
main(argv).then(
  (code) => process.exit(code),
  // A wrong flag exits 2, a failure 1 (failures.ts says which is which).
  (err: unknown) => process.exit(reportFailure(err, wantsStack(argv))),
);
