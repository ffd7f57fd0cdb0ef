#!/usr/bin/env node
// The `edu-plus` command (package.json "bin"): `npx edu-plus vm …` from a clone after
// `npm install`. The sources are TypeScript run by tsx, so register tsx's loader first and then
// hand over to cli/main.ts, which parses the arguments and sets the exit code.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
