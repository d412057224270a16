// Bundles the CLI and server into one minified ESM file with a source map: dist/edgebus.mjs.
// It runs with no node_modules beside it. CommonJS dependencies (aedes' helpers, ws, pino) need
// `require`, which an ESM file lacks: the banner creates one.
import { build } from 'esbuild'
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8'))

// Optional modules (ws: bufferutil, utf-8-validate; debug: supports-color), and parts of MQTT.js the
// CLI never uses on Node (socks: SOCKS proxies, ~68 KiB with ip-address and smart-buffer;
// worker-timers: browser timers): bundled as modules that throw when used, so their users fall
// back to plain JS instead of looking for them on disk at run time. tweetnacl (33 KiB) signs NATS
// nkey/JWT logins, which bridges do not offer (user/password, token, client certificates): any use
// of it fails with its name.
const absentOptionalNatives = {
  name: 'absent-optional-natives',
  setup(b) {
    b.onResolve({ filter: /^(bufferutil|utf-8-validate|supports-color|socks|worker-timers|tweetnacl)$/ }, (args) => ({ path: args.path, namespace: 'absent' }))
    b.onLoad({ filter: /.*/, namespace: 'absent' }, (args) => {
      const fail = `function () { throw new Error('${args.path} is not bundled') }`
      if (args.path === 'tweetnacl') return { contents: `const f = ${fail}; const any = new Proxy(f, { get: () => any }); module.exports = any`, loader: 'js' }
      // MQTT.js reads these at load time: give it names that fail only when called
      if (args.path === 'worker-timers') return { contents: `exports.setInterval = exports.clearInterval = ${fail}`, loader: 'js' }
      if (args.path === 'socks') return { contents: `exports.SocksClient = { createConnection: ${fail} }`, loader: 'js' }
      return { contents: `throw new Error('${args.path} is not bundled')`, loader: 'js' }
    })
  },
}

/** A browser module (ES2020), bundled and minified in memory. */
async function browserModule(entry) {
  const out = await build({ entryPoints: [`${root}${entry}`], bundle: true, format: 'esm', target: 'es2020', minify: true, write: false, logLevel: 'warning' })
  return out.outputFiles[0].text
}

/** The browser client, minified, served by the server at /client.js (and written to dist/client.js). */
export async function bundleClient() {
  const code = await browserModule('src/client/edgebus-client.ts')
  mkdirSync(`${root}dist`, { recursive: true })
  writeFileSync(`${root}dist/client.js`, code)
  return code
}

/** The dashboard: dashboard/index.html with its CSS and its script (the client inside) inlined. */
export async function bundleDashboard() {
  const js = (await browserModule('dashboard/dashboard.ts')).replace(/<\/script/gi, '<\\/script')
  const css = readFileSync(`${root}dashboard/dashboard.css`, 'utf8')
  return readFileSync(`${root}dashboard/index.html`, 'utf8').replace('/*CSS*/', () => css).replace('/*JS*/', () => js)
}

/** The server bundle; `names: true` keeps identifiers (for readable `node --cpu-prof` profiles). */
export async function bundle({ outfile = `${root}dist/edgebus.mjs`, format = 'esm', names = false } = {}) {
  const esm = format === 'esm'
  const client = await bundleClient()
  const dashboard = await bundleDashboard()
  await build({
    entryPoints: [`${root}src/cli/main.ts`],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format,
    minifySyntax: true,
    minifyWhitespace: true,
    minifyIdentifiers: !names,
    sourcemap: true,
    legalComments: 'linked',
    define: { __EDGEBUS_VERSION__: JSON.stringify(pkg.version), __EDGEBUS_CLIENT_JS__: JSON.stringify(client), __EDGEBUS_DASHBOARD_HTML__: JSON.stringify(dashboard) },
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
