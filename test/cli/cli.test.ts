import { createServer } from 'node:net'
import { describe, expect, it } from 'vitest'
import { BUNDLE, run, spawnLines, startEdgebus, waitForSubscription } from '../support/edgebus.ts'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const edgebus = (args: string[], opts: { input?: string; cwd?: string; env?: Record<string, string> } = {}) => run(process.execPath, [BUNDLE, ...args], opts)

describe('edgebus CLI', () => {
  it('prints its version and help', async () => {
    const v = await edgebus(['--version'])
    expect(v.code).toBe(0)
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/)
    for (const cmd of ['serve', 'pub', 'sub', 'stream', 'consumer', 'client', 'user', 'acl']) {
      const h = await edgebus([cmd, '--help'])
      expect(h.code, cmd).toBe(0)
      expect(h.stdout).toContain(`Usage: edgebus ${cmd}`)
    }
    expect((await edgebus(['--help'])).stdout).toContain('Commands:')
  })

  it('serve --help names the sections only the config file sets', async () => {
    const h = (await edgebus(['serve', '--help'])).stdout
    expect(h).toContain('--http-cors')
    expect(h).toMatch(/config file only[\s\S]*"streams": \[\.\.\.\][\s\S]*"auth": \{\.\.\.\}/)
    expect(h).toContain("relative to the file's folder")
  })

  it('exits 2 with a named error on bad config, unknown flags and unknown commands', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'edgebus-cli-'))
    writeFileSync(join(cwd, 'edgebus.json'), JSON.stringify({ mqtt: { port: 'x' } }))
    const bad = await edgebus(['serve'], { cwd })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('ECONFIG_INVALID')
    expect(bad.stderr).toContain('"mqtt.port"')
    const flag = await edgebus(['serve', '--mqtt-prot', '1'])
    expect(flag.code).toBe(2)
    expect(flag.stderr).toContain('EUSAGE')
    expect((await edgebus(['frobnicate'])).code).toBe(2)
    const envBad = await edgebus(['serve', '--print-config'], { env: { EDGEBUS_HTTP_PORT: '99999' } })
    expect(envBad.code).toBe(2)
    expect(envBad.stderr).toContain('EDGEBUS_HTTP_PORT')
  })

  it('--print-config shows the merged result', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'edgebus-cli-'))
    writeFileSync(join(cwd, 'edgebus.json'), JSON.stringify({ mqtt: { port: 1999 } }))
    const res = await edgebus(['serve', '--print-config', '--http-port', '0'], { cwd, env: { EDGEBUS_LIMITS_DRAIN_TIMEOUT: '2m' } })
    expect(res.code).toBe(0)
    expect(JSON.parse(res.stdout)).toMatchObject({ mqtt: { port: 1999 }, http: { port: 0 }, limits: { drainTimeout: '2m' } })
  })

  it('fails clearly when the port is taken', async () => {
    const blocker = createServer()
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r))
    const port = (blocker.address() as { port: number }).port
    const res = await edgebus(['serve', '--host', '127.0.0.1', '--mqtt-port', String(port), '--http-port', '0'])
    blocker.close()
    expect(res.code).toBe(1)
    expect(res.stderr).toContain('EADDRINUSE')
    expect(res.stderr).toContain(`port ${port}`)
  })

  it('pub and sub round trip, from stdin too, and refuse bad subjects', async () => {
    const srv = await startEdgebus()
    try {
      const sub = spawnLines(process.execPath, [BUNDLE, 'sub', 'cli.>', '--url', srv.mqttUrl, '--count', '3', '--json'])
      await waitForSubscription(srv, 'cli/#')
      expect((await edgebus(['pub', 'cli.a', 'one', '--url', srv.mqttUrl])).code).toBe(0)
      expect((await edgebus(['pub', 'cli/b', '--qos', '1', '--url', srv.mqttUrl], { input: 'from stdin' })).code).toBe(0)
      expect((await edgebus(['pub', 'cli.c', 'three', '--qos', '2', '--url', srv.wsUrl])).code).toBe(0)
      const lines = (await sub.waitFor(3)).map((l) => JSON.parse(l) as { subject: string; payload: string })
      expect(lines.map((l) => [l.subject, l.payload])).toEqual([['cli.a', 'one'], ['cli.b', 'from stdin'], ['cli.c', 'three']])
      const wild = await edgebus(['pub', 'cli.*', 'x', '--url', srv.mqttUrl])
      expect(wild.code).toBe(2)
      expect(wild.stderr).toContain('ESUBJECT_WILDCARD')
      const down = await edgebus(['pub', 'x', 'y', '--url', 'mqtt://127.0.0.1:1'])
      expect(down.code).toBe(1)
      expect(down.stderr).toContain('ECONNECT')
    } finally {
      await srv.stop()
    }
  })

  it('shuts down gracefully on SIGTERM within 5 s, exiting 0', async () => {
    const srv = await startEdgebus()
    const t0 = Date.now()
    expect(await srv.stop()).toBe(0)
    expect(Date.now() - t0).toBeLessThan(5000)
  })
})

describe('edgebus stream/consumer against a server that says no', () => {
  it("prints the server's code (not ECONNECT); what the server found invalid exits 2, a conflict 1", async () => {
    const srv = await startEdgebus()
    const cli = (...args: string[]) => edgebus([...args, '--server', srv.httpUrl])
    try {
      expect((await cli('stream', 'add', 'jobs', '--subjects', 'jobs.>')).code).toBe(0)
      const twice = await cli('stream', 'add', 'jobs', '--subjects', 'jobs.>')
      expect(twice.code).toBe(1)
      expect(twice.stderr).toMatch(/^edgebus: ESTREAM_EXISTS: a stream named "jobs" exists already/)
      const invalid = await cli('stream', 'add', 'other', '--subjects', 'other.>', '--max-age', 'a while')
      expect(invalid.code).toBe(2)
      expect(invalid.stderr).toMatch(/^edgebus: ESTREAM_INVALID: .*maxAge "a while"/)
      const deliver = await cli('consumer', 'add', 'jobs', 'w', '--deliver', 'sometimes')
      expect(deliver.code).toBe(2)
      expect(deliver.stderr).toMatch(/^edgebus: ECONSUMER_INVALID: /)
      const missing = await cli('consumer', 'info', 'nope', 'w')
      expect(missing.code).toBe(1)
      expect(missing.stderr).toMatch(/^edgebus: ESTREAM_NOT_FOUND: /)
      for (const r of [twice, invalid, deliver, missing]) expect(r.stderr).not.toContain('ECONNECT')
    } finally {
      await srv.stop()
    }
  })

  it('consumer next --wait takes a duration: it waits for a message published meanwhile', async () => {
    const srv = await startEdgebus({ config: { streams: [{ name: 'jobs', subjects: ['jobs.>'], consumers: [{ name: 'w' }] }] } })
    try {
      const started = Date.now()
      const next = edgebus(['consumer', 'next', 'jobs', 'w', '--wait', '5s', '--server', srv.httpUrl])
      // published while the CLI waits, or just before it asks: either way it prints it, well before 5 s
      expect((await edgebus(['pub', 'jobs.a', 'work', '--qos', '1', '--url', srv.mqttUrl])).code).toBe(0)
      const got = await next
      expect(got.code, got.stderr).toBe(0)
      expect(got.stdout.trim()).toBe('1 jobs/a work')
      expect(Date.now() - started).toBeLessThan(5000)
      // nothing to take: it waits the whole 400 ms (before, '400ms' read as 0 and it returned at once)
      const empty = Date.now()
      expect((await edgebus(['consumer', 'next', 'jobs', 'w', '--wait', '400ms', '--server', srv.httpUrl])).stdout).toBe('')
      expect(Date.now() - empty).toBeGreaterThanOrEqual(400)
      const bad = await edgebus(['consumer', 'next', 'jobs', 'w', '--wait', 'soon', '--server', srv.httpUrl])
      expect(bad.code).toBe(2)
      expect(bad.stderr).toContain('EUSAGE: --wait "soon"')
    } finally {
      await srv.stop()
    }
  })
})

describe('edgebus serve --config', () => {
  it("finds the certificates and the password file beside the config file, started from another folder", async () => {
    const { makeTestPki } = await import('../support/tls.ts')
    const { copyFileSync, mkdirSync } = await import('node:fs')
    const pki = makeTestPki()
    const folder = mkdtempSync(join(tmpdir(), 'edgebus-etc-'))
    mkdirSync(join(folder, 'pki'))
    copyFileSync(pki.serverCert, join(folder, 'pki', 'server.pem'))
    copyFileSync(pki.serverKey, join(folder, 'pki', 'server.key'))
    expect((await edgebus(['passwd', join(folder, 'passwd'), 'ops'], { input: 'secret-pass\n' })).code).toBe(0)
    writeFileSync(join(folder, 'edgebus.json'), JSON.stringify({
      dataDir: 'data', tls: { cert: 'pki/server.pem', key: 'pki/server.key', mqttPort: 0 }, auth: { passwordFile: 'passwd' },
    }))
    const srv = await startEdgebus({ args: ['--config', join(folder, 'edgebus.json')] }) // cwd: a fresh temp folder
    try {
      const url = `mqtts://localhost:${srv.tlsPort}`
      const pub = await edgebus(['pub', 'x', 'y', '--url', url, '--cafile', pki.ca, '--username', 'ops', '--password', 'secret-pass'])
      expect(pub.code, pub.stderr).toBe(0)
      expect(srv.output.join('\n')).toContain(join(folder, 'data'))
    } finally {
      await srv.stop()
    }
  })
})
