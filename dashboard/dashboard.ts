/**
 * The dashboard page's code: plain TypeScript, no framework. It reads /api/stats,
 * /api/streams, /api/bridges, /api/connections and consumers every 2 s, and watches subjects live through the
 * browser client (/client.js) over /ws.
 */
import { connect, type Message } from '../src/client/edgebus-client.ts'

const $ = (id: string): HTMLElement => document.getElementById(id) as HTMLElement
const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`)
const fmtBytes = (n: number): string => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KB` : `${n} B`)
const fmtRate = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(n < 10 ? 1 : 0))
const fmtUptime = (s: number): string => (s >= 86400 ? `${Math.floor(s / 86400)}d${s % 86400 >= 3600 ? ` ${Math.floor((s % 86400) / 3600)}h` : ''}` : s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m` : `${Math.floor(s / 60)}m ${s % 60}s`)

// on a server with users: /?token=<access token>, or the token given in the prompt (kept for this tab)
const TOKEN_KEY = 'edgebus.token'
const token = new URLSearchParams(location.search).get('token') ?? sessionStorage.getItem(TOKEN_KEY) ?? undefined

async function get<T>(path: string): Promise<T> {
  const res = await fetch(path, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } })
  if (res.status === 401 || res.status === 403) askForToken(res.status)
  if (!res.ok) throw new Error(`${path}: ${res.status}`)
  return res.json() as Promise<T>
}

/** The API said no: show the token form, saying why (no token, a refused one, or too few rights). */
function askForToken(status: number): void {
  const form = $('login') as HTMLFormElement
  if (!form.hidden) return
  $('login-why').textContent = status === 403
    ? 'this token may not read the server (it needs sub on $SYS/#): give another'
    : token === undefined ? 'this server wants an access token' : 'the token was refused: give another'
  form.hidden = false
  ;($('token') as HTMLInputElement).focus()
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault()
  const t = ($('token') as HTMLInputElement).value.trim()
  if (t === '') sessionStorage.removeItem(TOKEN_KEY)
  else sessionStorage.setItem(TOKEN_KEY, t)
  // load again with it: the API calls and the /ws connection all take it from the start
  location.replace(location.pathname)
})

// --- server stats and the rate plot (last 5 minutes, one point per 2 s) ---------------------

interface Stats { version: string; uptimeSeconds: number; connections: number; messagesIn: number; messagesOut: number; dropped: number; memory: { rss: number } }
const history: Array<[number, number]> = []
let last: { t: number; in: number; out: number } | null = null

function plot(): void {
  const c = $('rates') as HTMLCanvasElement
  const w = (c.width = c.clientWidth * devicePixelRatio)
  const h = (c.height = 120 * devicePixelRatio)
  const g = c.getContext('2d') as CanvasRenderingContext2D
  g.clearRect(0, 0, w, h)
  const max = Math.max(1, ...history.flat())
  for (const [i, color] of [[0, '#4fb3ff'], [1, '#7ddc7a']] as const) {
    g.strokeStyle = color
    g.lineWidth = 2 * devicePixelRatio
    g.beginPath()
    history.forEach((p, x) => {
      const px = (x / 149) * w
      const py = h - (p[i] / max) * (h - 4) - 2
      if (x === 0) g.moveTo(px, py); else g.lineTo(px, py)
    })
    g.stroke()
  }
}

async function refreshStats(): Promise<void> {
  const s = await get<Stats>('/api/stats')
  const now = Date.now()
  $('version').textContent = `v${s.version}`
  $('uptime').textContent = fmtUptime(s.uptimeSeconds)
  $('conns').textContent = String(s.connections)
  $('dropped').textContent = String(s.dropped)
  $('memory').textContent = fmtBytes(s.memory.rss)
  if (last !== null) {
    const dt = (now - last.t) / 1000
    const rin = (s.messagesIn - last.in) / dt
    const rout = (s.messagesOut - last.out) / dt
    $('rate-in').textContent = fmtRate(rin)
    $('rate-out').textContent = fmtRate(rout)
    history.push([rin, rout])
    if (history.length > 150) history.shift()
    plot()
  }
  last = { t: now, in: s.messagesIn, out: s.messagesOut }
}

// --- streams, consumers, connections -------------------------------------------------------------

interface StreamInfo { name: string; subjects: string[]; messages: number; bytes: number; firstSeq: number; lastSeq: number }
const lastSeqs = new Map<string, { t: number; seq: number }>()

async function refreshStreams(): Promise<void> {
  const { streams } = await get<{ streams: StreamInfo[] }>('/api/streams')
  const now = Date.now()
  const rows: string[] = []
  const consumerRows: string[] = []
  for (const s of streams) {
    const prev = lastSeqs.get(s.name)
    const rate = prev ? (s.lastSeq - prev.seq) / ((now - prev.t) / 1000) : 0
    lastSeqs.set(s.name, { t: now, seq: s.lastSeq })
    const d = await get<{ config: Record<string, number | string> }>(`/api/streams/${encodeURIComponent(s.name)}`)
    const c = d.config
    const retention = [c.maxMsgs ? `${c.maxMsgs} msgs` : '', c.maxBytes ? fmtBytes(Number(c.maxBytes)) : '', c.maxAge ? `max age ${fmtUptime(Math.round(Number(c.maxAge) / 1000))}` : '', c.maxMsgsPerSubject ? `${c.maxMsgsPerSubject}/subject` : ''].filter(Boolean).join(', ') || 'none'
    rows.push(`<tr data-stream="${esc(s.name)}"><td>${esc(s.name)}</td><td>${esc(s.subjects.join(', '))}</td><td class="messages">${s.messages}</td><td>${fmtBytes(s.bytes)}</td><td>${s.firstSeq}</td><td>${s.lastSeq}</td><td>${esc(retention)}</td><td>${fmtRate(rate)}</td></tr>`)
    const { consumers } = await get<{ consumers: Array<Record<string, number | string>> }>(`/api/streams/${encodeURIComponent(s.name)}/consumers`)
    for (const k of consumers) consumerRows.push(`<tr><td>${esc(s.name)}</td><td>${esc(String(k.name))}</td><td>${k.ackFloor}</td><td>${k.pending}</td><td>${k.redelivered}</td><td>${k.lag}</td><td>${k.dlq}</td></tr>`)
  }
  $('stream-rows').innerHTML = rows.join('') || '<tr><td colspan="8">no streams</td></tr>'
  $('consumer-rows').innerHTML = consumerRows.join('') || '<tr><td colspan="7">no consumers</td></tr>'
}

interface BridgeRow {
  name: string; state: string; url: string | null; downSince: string | null; lastError: string | null
  backlog: { messages: number; bytes: number; oldestSeconds: number }; ackRate: number; acked: number; refused: number; deadLettered: number; reconnects: number
}

async function refreshBridges(): Promise<void> {
  const { bridges } = await get<{ bridges: BridgeRow[] }>('/api/bridges')
  $('bridge-rows').innerHTML = bridges.map((b) => {
    const down = b.downSince === null ? '' : `down since ${new Date(b.downSince).toLocaleTimeString()}`
    const state = b.state === 'connected' ? `connected to ${b.url ?? ''}` : b.state === 'connecting' ? `${down}${down ? ', ' : ''}connecting to ${b.url ?? ''}` : down || b.state
    const cls = b.state === 'connected' ? 'ok' : 'warn'
    return `<tr data-bridge="${esc(b.name)}"><td>${esc(b.name)}</td><td class="state ${cls}" title="${esc(b.lastError ?? '')}">${esc(state)}</td><td class="backlog">${b.backlog.messages}</td><td>${fmtBytes(b.backlog.bytes)}</td><td>${b.backlog.oldestSeconds > 0 ? fmtUptime(b.backlog.oldestSeconds) : '—'}</td><td>${fmtRate(b.ackRate)}</td><td class="acked">${b.acked}</td><td>${b.refused}</td><td>${b.deadLettered}</td><td>${b.reconnects}</td></tr>`
  }).join('') || '<tr><td colspan="10">no bridges (declared in the config file, docs/bridges.md)</td></tr>'
}

async function refreshConnections(): Promise<void> {
  const { connections } = await get<{ connections: Array<{ clientId: string | null; protocol: string; version: number | null; remote: string; subscriptions: string[]; queuedBytes: number }> }>('/api/connections')
  $('conn-rows').innerHTML = connections.map((c) => `<tr><td>${esc(c.clientId ?? '(connecting)')}</td><td>${esc(c.protocol)}${c.version ? ` v${c.version}` : ''}</td><td>${esc(c.remote)}</td><td>${esc(c.subscriptions.join(', '))}</td><td>${fmtBytes(c.queuedBytes)}</td></tr>`).join('') || '<tr><td colspan="5">no MQTT connections</td></tr>'
}

// --- live tail and the subject tree ----------------------------------------------------------------

const bus = connect(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`, token === undefined ? {} : { token })
bus.onopen = () => { $('status').textContent = 'live'; $('status').className = 'badge ok' }
bus.onclose = () => { $('status').textContent = 'reconnecting…'; $('status').className = 'badge' }
let unsubscribe: (() => void) | null = null
const seen = new Map<string, number[]>() // subject -> arrival times in the last 10 s

function preview(m: Message): string {
  const view = ($('view') as HTMLSelectElement).value
  const text = m.payload ?? ''
  if (m.payload === undefined || view === 'hex') {
    const bytes = m.payload === undefined ? Uint8Array.from(atob(m.payloadBase64 ?? ''), (c) => c.charCodeAt(0)) : new TextEncoder().encode(text)
    return Array.from(bytes.slice(0, 256), (b) => b.toString(16).padStart(2, '0')).join(' ')
  }
  if (view === 'json') {
    try { return JSON.stringify(JSON.parse(text), null, 2) } catch { return text }
  }
  return text.length > 500 ? `${text.slice(0, 500)}…` : text
}

function watch(filter: string): void {
  unsubscribe?.()
  $('messages').innerHTML = ''
  seen.clear()
  unsubscribe = bus.subscribe(filter, (m) => {
    const li = document.createElement('li')
    li.innerHTML = `<time>${new Date().toLocaleTimeString()}</time><span class="subject">${esc(m.subject)}</span> ${esc(preview(m))}`
    const list = $('messages')
    list.prepend(li)
    while (list.children.length > 200) list.lastElementChild?.remove()
    const times = seen.get(m.subject) ?? []
    times.push(Date.now())
    seen.set(m.subject, times)
  })
}

function refreshTree(): void {
  const now = Date.now()
  const rows: Array<[string, number]> = []
  for (const [subject, times] of seen) {
    while (times.length > 0 && (times[0] as number) < now - 10_000) times.shift()
    rows.push([subject, times.length / 10])
  }
  rows.sort((a, b) => a[0].localeCompare(b[0]))
  $('tree').innerHTML = rows.slice(0, 300).map(([s, r]) => {
    const depth = s.split(/[./]/).length - 1
    return `<li style="padding-left:${depth * 10}px"><span>${esc(s)}</span><span class="rate">${fmtRate(r)}</span></li>`
  }).join('')
}

$('tail-form').addEventListener('submit', (e) => { e.preventDefault(); watch(($('filter') as HTMLInputElement).value.trim() || '#') })
watch('#')

async function tick(): Promise<void> {
  await Promise.all([refreshStats(), refreshStreams(), refreshBridges(), refreshConnections()]).catch((err: unknown) => {
    $('status').textContent = `error: ${(err as Error).message}`
    $('status').className = 'badge'
  })
  refreshTree()
}
void tick()
setInterval(() => { void tick() }, 2000)
