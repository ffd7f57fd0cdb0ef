#!/usr/bin/env node
// The `edu-plus` command (package.json "bin"): `npx edu-plus vm …` from a clone after
// `npm install`. The sources are TypeScript run by tsx, so register tsx's loader first and then
// hand over to cli/main.ts, which parses the arguments and sets the exit code. An unsupported
// platform gets one line saying why instead of a stack trace from the native boundary.
import { register } from 'tsx/esm/api';

register();
const { currentPlatform, unsupportedReason } = await import('../protocol/native/platform.ts');
const reason = unsupportedReason(currentPlatform());
if (reason !== undefined) {
  console.error(`edu-plus: ${reason}`);
  process.exit(1);
}
await import('../cli/main.ts');
