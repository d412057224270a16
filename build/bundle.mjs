// Bundles the CLI and server into one minified ESM file with a source map: dist/edgebus.mjs.
// It runs with no node_modules beside it. CommonJS dependencies (aedes' helpers, ws, pino) need
// `require`, which an ESM file lacks: the banner creates one.
import { build } from 'esbuild'
import { readFileSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8'))

export async function bundle({ outfile = `${root}dist/edgebus.mjs`, format = 'esm' } = {}) {
  const esm = format === 'esm'
  await build({
    entryPoints: [`${root}src/cli/main.ts`],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format,
    minify: true,
    sourcemap: true,
    legalComments: 'linked',
    define: { __EDGEBUS_VERSION__: JSON.stringify(pkg.version) },
    // ws' optional native speedups: absent is fine, ws falls back to JS
    external: ['bufferutil', 'utf-8-validate'],
    banner: esm
      ? { js: "import { createRequire as __edgebusCreateRequire } from 'node:module'; const require = __edgebusCreateRequire(import.meta.url);" }
      : {},
    logLevel: 'warning',
  })
  return statSync(outfile).size
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const size = await bundle()
  console.log(`dist/edgebus.mjs: ${(size / 1024).toFixed(1)} KiB`)
}
