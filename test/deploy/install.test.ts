import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { ROOT, run, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { freePort } from '../support/free-port.ts'
import { parseUnit, readDeploy, splitCommand } from './files.ts'

// npm pack of this checkout (its bundle: `npm run build` before the tests; prepack builds it for a
// real `npm pack`), installed with `npm install -g` into a prefix of its own
const work = mkdtempSync(join(tmpdir(), 'edgebus-install-'))
const prefix = join(work, 'prefix')
let tarball: string
let packed: string[]
const started: StartedEdgebus[] = []

beforeAll(async () => {
  const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT, timeoutMs: 60_000 })
  expect(pack.code, pack.stderr).toBe(0)
  const [info] = JSON.parse(pack.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>
  tarball = join(work, info?.filename as string)
  packed = (info?.files ?? []).map((f) => f.path)
  // offline: the package must need nothing from the registry
  const install = await run('npm', ['install', '-g', '--offline', '--no-audit', '--no-fund', '--prefix', prefix, tarball], { cwd: work, timeoutMs: 60_000 })
  expect(install.code, install.stderr).toBe(0)
}, 120_000)
afterAll(async () => {
  for (const s of started) await s.stop()
})

describe('npm install -g and npx', () => {
  it('packs the command, the bundle and the docs, and no sources or tests', () => {
    expect(packed).toEqual(expect.arrayContaining(['bin/edgebus.mjs', 'dist/edgebus.mjs', 'package.json', 'README.md', 'docs/errors.md']))
    expect(packed.filter((p) => /^(src|test|bench|node_modules|dashboard)\//.test(p))).toEqual([])
    // everything is bundled: an install fetches nothing
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies?: object }
    expect(pkg.dependencies ?? {}).toEqual({})
  })

  it('installs a working `edgebus` command into the prefix, which serves', async () => {
    const bin = join(prefix, 'bin', 'edgebus')
    expect(existsSync(bin)).toBe(true)
    const version = await run(bin, ['--version'])
    expect(version.code).toBe(0)
    expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version)
    const srv = await startEdgebus({ command: [bin] })
    started.push(srv)
    expect((await fetch(`${srv.httpUrl}/readyz`)).status).toBe(200)
    expect((await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(srv.mqttPort), '-t', 'installed/ok', '-m', '1'])).code).toBe(0)
  })

  it('runs with npx from the tarball', async () => {
    const npx = await run('npx', ['--offline', '--yes', '--package', tarball, 'edgebus', '--version'], { cwd: work, timeoutMs: 60_000 })
    expect(npx.code, npx.stderr).toBe(0)
    expect(npx.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/)
  })
})

describe('deploy/edgebus.service', () => {
  const unit = parseUnit(readDeploy('edgebus.service'))
  const service = unit.get('Service') as Map<string, string[]>
  const one = (key: string): string => {
    const values = service.get(key) ?? []
    expect(values, key).toHaveLength(1)
    return values[0] as string
  }

  it('runs `edgebus serve` with a state directory as its data dir, restarts on failure (not on a bad config) and reloads on SIGHUP', () => {
    expect(one('Type')).toBe('exec')
    expect(splitCommand(one('ExecStart'))).toEqual(['/usr/local/bin/edgebus', 'serve'])
    expect(one('StateDirectory')).toBe('edgebus')
    expect(service.get('Environment')).toContain('EDGEBUS_DATA_DIR=/var/lib/edgebus')
    expect(one('Restart')).toBe('on-failure')
    expect(one('RestartPreventExitStatus')).toBe('2')
    expect(one('ExecReload')).toBe('/bin/kill -HUP $MAINPID')
    expect(unit.get('Install')?.get('WantedBy')).toEqual(['multi-user.target'])
  })

  it('a bad setting exits 2, the status the unit does not restart on', async () => {
    const bad = await run(join(prefix, 'bin', 'edgebus'), ['serve'], { env: { EDGEBUS_HTTP_PORT: 'eighty' } })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('ECONFIG_INVALID: environment variable EDGEBUS_HTTP_PORT')
  })

  it('becomes active only once /readyz answers 200: its ExecStartPost waits for the server the unit starts', async () => {
    const port = Number((service.get('Environment') ?? []).find((e) => e.startsWith('EDGEBUS_HTTP_PORT='))?.split('=')[1])
    expect(port).toBe(8080) // the default http.port, read by server and probe alike
    const test = await freePort()
    const [cmd, ...args] = splitCommand(one('ExecStartPost'))
    // the probe starts first (as systemd runs it right after ExecStart) and waits
    const probe = spawn(cmd as string, args, { env: { ...process.env, EDGEBUS_HTTP_PORT: String(test) }, stdio: 'ignore' })
    const exited = new Promise<number | null>((resolve) => probe.once('exit', resolve))
    let done = false
    void exited.then(() => { done = true })
    try {
      // the unit's own command and environment, from the installed package
      const data = mkdtempSync(join(work, 'state-'))
      expect(done).toBe(false)
      const srv = await startEdgebus({ command: [join(prefix, 'bin', 'edgebus')], env: { EDGEBUS_DATA_DIR: data }, args: ['--http-port', String(test)] })
      started.push(srv)
      // it could not have finished before the server listened: nothing answered on the port
      expect(await vi.waitFor(() => { if (!done) throw new Error('probe still waiting'); return exited }, { timeout: 10_000, interval: 100 })).toBe(0)
      expect(readdirSync(data).length).toBeGreaterThan(0) // the data dir is the one the unit names
    } finally {
      probe.kill()
    }
  })

  it('passes systemd-analyze verify', async (ctx) => {
    const which = await run('sh', ['-c', 'command -v systemd-analyze'])
    if (which.code !== 0) {
      console.warn('systemd-analyze is not installed (Debian: apt-get install systemd): deploy/edgebus.service not verified')
      ctx.skip()
    }
    // verify checks that ExecStart exists: point it at the installed command
    const copy = join(work, 'edgebus.service')
    writeFileSync(copy, readDeploy('edgebus.service').replace('/usr/local/bin/edgebus', join(prefix, 'bin', 'edgebus')))
    const verify = await run('systemd-analyze', ['verify', copy])
    expect(verify.stderr + verify.stdout).toBe('')
    expect(verify.code).toBe(0)
    // and it does find faults in a unit
    writeFileSync(copy, readDeploy('edgebus.service').replace('Restart=on-failure', 'Restart=sometimes'))
    expect((await run('systemd-analyze', ['verify', copy])).stderr).toContain('sometimes')
  })
})
