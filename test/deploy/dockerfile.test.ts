import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigFields, envName } from '../../src/config/schema.ts'
import { ROOT, run, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { parseDockerfile, readDeploy } from './files.ts'

// No Docker engine runs here: the recipe is checked by reading it as the builder does
const { directives, instructions } = parseDockerfile(readDeploy('Dockerfile'))
const KEYWORDS = new Set(['FROM', 'RUN', 'CMD', 'LABEL', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME', 'USER', 'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL'])
const stages = instructions.reduce<Array<{ from: string; name: string | null; body: typeof instructions }>>((acc, ins) => {
  if (ins.keyword === 'FROM') {
    const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)
    expect(m, `FROM on line ${ins.line}`).not.toBeNull()
    acc.push({ from: m?.[1] as string, name: m?.[2] ?? null, body: [] })
  } else {
    expect(acc.length, `line ${ins.line}: an instruction before FROM`).toBeGreaterThan(0)
    acc.at(-1)?.body.push(ins)
  }
  return acc
}, [])
const final = stages.at(-1) as (typeof stages)[number]
const all = (keyword: string) => final.body.filter((i) => i.keyword === keyword)
const exec = (keyword: string): string[] => {
  const [ins] = all(keyword)
  expect(ins, keyword).toBeDefined()
  return JSON.parse(ins?.args.replace(/^--\S+\s+/g, '').replace(/^.*?(?=\[)/, '') as string) as string[]
}

describe('deploy/Dockerfile', () => {
  it('is made of Dockerfile instructions, its exec forms valid JSON, BuildKit syntax declared for RUN --mount', () => {
    expect(instructions.length).toBeGreaterThan(5)
    for (const ins of instructions) expect(KEYWORDS.has(ins.keyword), `line ${ins.line}: ${ins.keyword}`).toBe(true)
    for (const ins of instructions.filter((i) => ['CMD', 'ENTRYPOINT'].includes(i.keyword))) expect(() => JSON.parse(ins.args), `line ${ins.line}`).not.toThrow()
    expect(directives.get('syntax')).toMatch(/^docker\/dockerfile:1/)
  })

  it('builds on the official Node.js image of the major version package.json asks for', () => {
    const engines = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node
    const major = /(\d+)/.exec(engines)?.[1]
    for (const s of stages) expect(s.from).toMatch(new RegExp(`^node:${major}(-|$)`))
    // a later stage's --from names an earlier stage
    const names = stages.map((s) => s.name)
    for (const ins of instructions) {
      const from = /--(?:mount=[^ ]*\bfrom|from)=([^, ]+)/.exec(ins.args)?.[1]
      if (from !== undefined) expect(names, `line ${ins.line}`).toContain(from)
    }
  })

  it('copies files that exist, and installs the npm package (tested in install.test.ts) as the command', () => {
    for (const ins of instructions.filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from'))) {
      const sources = ins.args.split(/\s+/).slice(0, -1)
      for (const s of sources) if (s !== '.') expect(existsSync(join(ROOT, s)), `COPY ${s}`).toBe(true)
    }
    expect(instructions.some((i) => i.keyword === 'RUN' && /\bnpm ci\b/.test(i.args))).toBe(true)
    expect(instructions.some((i) => i.keyword === 'RUN' && /\bnpm pack\b/.test(i.args))).toBe(true)
    expect(all('RUN').some((i) => /\bnpm install -g\b.*edgebus\.tgz/.test(i.args))).toBe(true)
    expect([...exec('ENTRYPOINT'), ...exec('CMD')]).toEqual(['edgebus', 'serve'])
    expect(all('USER').map((i) => i.args)).toEqual(['node']) // not root
    // the build context leaves the host's node_modules and bundle out (npm ci and prepack make them)
    expect(readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n')).toEqual(expect.arrayContaining(['node_modules', 'dist']))
  })

  it('keeps data in a volume, exposes the default ports and sets only real EDGEBUS_ settings', () => {
    const env = all('ENV').flatMap((i) => i.args.split(/\s+/)).map((kv) => kv.split('=') as [string, string])
    const known = new Set(Object.keys(ConfigFields).map(envName))
    for (const [name] of env.filter(([n]) => n.startsWith('EDGEBUS_'))) expect(known.has(name), name).toBe(true)
    const dataDir = env.find(([n]) => n === 'EDGEBUS_DATA_DIR')?.[1]
    expect(all('VOLUME').map((i) => i.args)).toEqual([dataDir])
    const ports = all('EXPOSE').flatMap((i) => i.args.split(/\s+/)).map(Number)
    const defaults = [ConfigFields['mqtt.port'], ConfigFields['http.port'], ConfigFields['tls.mqttPort']].map((f) => Number((f as { default: unknown }).default))
    expect(ports.sort()).toEqual(defaults.sort())
  })

  describe('HEALTHCHECK', () => {
    let srv: StartedEdgebus
    beforeAll(async () => { srv = await startEdgebus() })
    afterAll(async () => { await srv?.stop() })

    it('asks /readyz: exit 0 from a ready server, 1 with none', async () => {
      const [cmd, ...args] = exec('HEALTHCHECK')
      expect(all('HEALTHCHECK')[0]?.args).toMatch(/^--interval=\S+ .*\bCMD \[/)
      expect(cmd).toBe('node')
      const ok = await run(process.execPath, args, { env: { EDGEBUS_HTTP_PORT: String(srv.httpPort) } })
      expect(ok.code, ok.stderr).toBe(0)
      const port = srv.httpPort
      await srv.stop()
      expect((await run(process.execPath, args, { env: { EDGEBUS_HTTP_PORT: String(port) } })).code).toBe(1)
    })
  })
})
