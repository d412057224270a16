// Builds a Node single executable application (SEA) from the bundle: dist/edgebus (Linux) or
// dist/edgebus.exe. Node 20's SEA wants a CommonJS entry, so the same sources are bundled once more
// as CJS, turned into a blob by `node --experimental-sea-config`, and injected with postject.
import { execFileSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdirSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { bundle } from './bundle.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const require = createRequire(import.meta.url)

export async function buildExecutable() {
  const dir = `${root}dist/sea`
  mkdirSync(dir, { recursive: true })
  await bundle({ outfile: `${dir}/edgebus.cjs`, format: 'cjs' })
  const config = `${dir}/sea-config.json`
  writeFileSync(config, JSON.stringify({ main: `${dir}/edgebus.cjs`, output: `${dir}/sea-prep.blob`, disableExperimentalSEAWarning: true }))
  execFileSync(process.execPath, ['--experimental-sea-config', config], { stdio: 'inherit' })
  const exe = `${root}dist/edgebus${process.platform === 'win32' ? '.exe' : ''}`
  copyFileSync(process.execPath, exe)
  chmodSync(exe, 0o755)
  const postject = require.resolve('postject/dist/cli.js')
  execFileSync(process.execPath, [postject, exe, 'NODE_SEA_BLOB', `${dir}/sea-prep.blob`,
    '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'], { stdio: 'inherit' })
  return { exe, size: statSync(exe).size }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { exe, size } = await buildExecutable()
  console.log(`${exe.slice(root.length)}: ${(size / 1024 / 1024).toFixed(1)} MiB`)
}
