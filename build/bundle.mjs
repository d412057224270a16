// Bundles the CLI and server into one minified ESM file with a source map: dist/edgebus.mjs.
// It runs with no node_modules beside it. CommonJS dependencies (aedes' helpers, ws, pino) need
// `require`, which an ESM file lacks: the banner creates one.
import { build } from 'esbuild'
import { readFileSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8'))

// Optional modules (ws: bufferutil, utf-8-validate; debug: supports-color): bundled as modules that throw,
// so their users fall back to plain JS instead of looking for them on disk at run time.
const absentOptionalNatives = {
  name: 'absent-optional-natives',
  setup(b) {
    b.onResolve({ filter: /^(bufferutil|utf-8-validate|supports-color)$/ }, (args) => ({ path: args.path, namespace: 'absent' }))
    b.onLoad({ filter: /.*/, namespace: 'absent' }, (args) => ({ contents: `throw new Error('${args.path} is not bundled')`, loader: 'js' }))
  },
}

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
    plugins: [absentOptionalNatives],
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
