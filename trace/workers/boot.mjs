// Worker threads do not inherit tsx's loader, so piscina starts this plain module, which
// loads the TypeScript task module through tsx's API and hands piscina its default export.
import { tsImport } from 'tsx/esm/api';

const tasks = await tsImport('./memory-tasks.ts', import.meta.url);
export default tasks.default;
