#!/usr/bin/env node
// The `video-refresher` command: TypeScript through tsx, like the project's other scripts.
import { register } from "tsx/esm/api";

register();
const { main } = await import("./main.ts");
await main();
