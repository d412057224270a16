#!/usr/bin/env node
// The `edgebus` command of the npm package: runs the bundle (npm run build creates it).
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const bundle = fileURLToPath(new URL('../dist/edgebus.mjs', import.meta.url))
if (!existsSync(bundle)) {
  process.stderr.write('edgebus: the bundle dist/edgebus.mjs is missing: run `npm run build` first\n')
  process.exit(1)
}
await import(bundle)
