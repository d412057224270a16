/**
 * The dashboard page's code: plain TypeScript, no framework. It reads /api/stats, /api/rates
 * (the server's last hour per second), /api/subjects, /api/streams, /api/bridges, /api/connections
 * and consumers every 2 s, and watches subjects live through the browser client (/client.js) over /ws.
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

// --- server stats and the rate plot: the last hour per second, kept by the server (/api/rates) ---

interface Stats { version: string; uptimeSeconds: number; connections: number; messagesIn: number; messagesOut: number; dropped: number; memory: { rss: number } }
interface RateSnapshot { interval: number; end: number; series: Record<string, number[]> }

const HOUR = 3600
/** Per series, rates per second, oldest first, all ending at `ratesEnd`. */
const rates = new Map<string, number[]>()
let ratesEnd = 0
const PALETTE = ['#4fb3ff', '#7ddc7a', '#e5a74b', '#d67ce0', '#ef6b6b', '#5fd4c8', '#c9c46a', '#9aa7ff']
/** The lines drawn: messages in and out, then streams and bridges, at most as many as colours. */
const LABELS: Record<string, string> = { 'messages.in': 'in', 'messages.out': 'out' }
const label = (name: string): string => LABELS[name] ?? name

async function refreshRates(): Promise<void> {
  // the whole hour at first, then what is new since the last point
  const seconds = ratesEnd === 0 ? HOUR : Math.min(HOUR, Math.ceil((Date.now() - ratesEnd) / 1000) + 2)
  const snap = await get<RateSnapshot>(`/api/rates?seconds=${seconds}`)
  const fresh = ratesEnd === 0 ? Infinity : Math.round((snap.end - ratesEnd) / 1000)
  const had = rates.get('messages.in')?.length ?? 0
  for (const [name, values] of Object.entries(snap.series)) {
    // a series new to the page: zeros before, so every series ends now
    const kept = rates.get(name) ?? new Array<number>(had).fill(0)
    kept.push(...values.slice(Math.max(0, values.length - fresh)))
    if (kept.length > HOUR) kept.splice(0, kept.length - HOUR)
    rates.set(name, kept)
  }
  for (const name of rates.keys()) if (!(name in snap.series)) rates.delete(name)
  ratesEnd = snap.end
  const now = (name: string): number => rates.get(name)?.at(-1) ?? 0
  $('rate-in').textContent = fmtRate(now('messages.in'))
  $('rate-out').textContent = fmtRate(now('messages.out'))
  plot()
}

/** The smallest 1, 2 or 5 times a power of ten at or above `n`: the top of the scale. */
function niceMax(n: number): number {
  const p = 10 ** Math.floor(Math.log10(Math.max(n, 1)))
  return ([1, 2, 5, 10].find((m) => m * p >= n) as number) * p
}

function plotted(): string[] {
  const names = [...rates.keys()]
  const rank = (n: string): number => (n.startsWith('messages.') ? 0 : n.startsWith('stream.') ? 1 : 2)
  return names.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b)).slice(0, PALETTE.length)
}

function plot(): void {
  const c = $('rates') as HTMLCanvasElement
  const dpr = devicePixelRatio
  const cssW = c.clientWidth
  const cssH = 160
  c.width = cssW * dpr
  c.height = cssH * dpr
  const g = c.getContext('2d') as CanvasRenderingContext2D
  g.scale(dpr, dpr)
  g.clearRect(0, 0, cssW, cssH)
  const names = plotted()
  const left = 44
  const bottom = 18
  const w = Math.max(10, cssW - left - 6)
  const h = cssH - bottom - 6
  let top = 0
  for (const n of names) for (const v of rates.get(n) as number[]) if (v > top) top = v
  const max = niceMax(top)
  // the time axis: the last 5, 15 or 60 minutes, the shortest that holds what the server has
  const points = rates.get('messages.in')?.length ?? 0
  const span = [300, 900, HOUR].find((sec) => sec >= points) ?? HOUR
  // the scale: four lines with their rates, and the time axis (now at the right)
  g.font = '11px system-ui, sans-serif'
  g.fillStyle = '#8a96a3'
  g.strokeStyle = '#26313c'
  g.lineWidth = 1
  g.textAlign = 'right'
  g.textBaseline = 'middle'
  for (let i = 0; i <= 4; i++) {
    const y = 6 + h - (i / 4) * h
    g.beginPath(); g.moveTo(left, y); g.lineTo(left + w, y); g.stroke()
    g.fillText(fmtRate((max * i) / 4), left - 4, y)
  }
  g.textAlign = 'center'
  g.textBaseline = 'top'
  const minutes = span / 60
  const step = ({ 5: 1, 15: w < 300 ? 5 : 3, 60: w < 300 ? 20 : 10 } as Record<number, number>)[minutes] as number
  for (let m = minutes; m >= 0; m -= step) {
    const x = left + w - (m / minutes) * w
    g.beginPath(); g.moveTo(x, 6); g.lineTo(x, 6 + h); g.stroke()
    g.fillText(m === 0 ? 'now' : `-${m}m`, Math.min(Math.max(x, left + 12), left + w - 12), 6 + h + 3)
  }
  names.forEach((name, k) => {
    const values = rates.get(name) as number[]
    g.strokeStyle = PALETTE[k] as string
    g.lineWidth = 1.5
    g.beginPath()
    values.forEach((v, i) => {
      if (values.length - 1 - i > span) return
      const x = left + w - ((values.length - 1 - i) / span) * w
      const y = 6 + h - (v / max) * h
      if (i === 0 || values.length - 1 - i === span) g.moveTo(x, y); else g.lineTo(x, y)
    })
    g.stroke()
  })
  // what is drawn, for tests and scripts: how many seconds, and the top of the scale
  c.dataset.seconds = String(points)
  c.dataset.span = String(span)
  c.dataset.scale = String(max)
  $('legend').innerHTML = names.map((n, k) => `<li><i style="background:${PALETTE[k]}"></i>${esc(label(n))} <span>${fmtRate(rates.get(n)?.at(-1) ?? 0)}/s</span></li>`).join('')
}
addEventListener('resize', plot)

async function refreshStats(): Promise<void> {
  const s = await get<Stats>('/api/stats')
  $('version').textContent = `v${s.version}`
  $('uptime').textContent = fmtUptime(s.uptimeSeconds)
  $('conns').textContent = String(s.connections)
  $('dropped').textContent = String(s.dropped)
  $('memory').textContent = fmtBytes(s.memory.rss)
}

// --- streams, consumers, clients ---------------------------------------------------------------

interface StreamInfo { name: string; subjects: string[]; messages: number; bytes: number; firstSeq: number; lastSeq: number }

/** A table row whose cells carry their column's name (narrow panels show each row as a card). */
const row = (attrs: string, cells: Array<[string, string] | [string, string, string]>): string => `<tr ${attrs}>${cells.map(([k, v, cls]) => `<td data-label="${k}"${cls !== undefined ? ` class="${cls}"` : k === 'messages' ? ' class="messages"' : ''}>${v}</td>`).join('')}</tr>`

async function refreshStreams(): Promise<void> {
  const { streams } = await get<{ streams: StreamInfo[] }>('/api/streams')
  const rows: string[] = []
  const consumerRows: string[] = []
  for (const s of streams) {
    const d = await get<{ config: Record<string, number | string> }>(`/api/streams/${encodeURIComponent(s.name)}`)
    const c = d.config
    const retention = [c.maxMsgs ? `${c.maxMsgs} msgs` : '', c.maxBytes ? fmtBytes(Number(c.maxBytes)) : '', c.maxAge ? `max age ${fmtUptime(Math.round(Number(c.maxAge) / 1000))}` : '', c.maxMsgsPerSubject ? `${c.maxMsgsPerSubject}/subject` : ''].filter(Boolean).join(', ') || 'none'
    const rate = rates.get(`stream.${s.name}`)?.at(-1) ?? 0
    rows.push(row(`data-stream="${esc(s.name)}"`, [['name', esc(s.name)], ['subjects', esc(s.subjects.join(', '))], ['messages', String(s.messages)], ['bytes', fmtBytes(s.bytes)], ['first', String(s.firstSeq)], ['last', String(s.lastSeq)], ['retention', esc(retention)], ['msg/s', fmtRate(rate)]]))
    const { consumers } = await get<{ consumers: Array<Record<string, number | string>> }>(`/api/streams/${encodeURIComponent(s.name)}/consumers`)
    for (const k of consumers) consumerRows.push(row(`data-consumer="${esc(String(k.name))}"`, [['stream', esc(s.name)], ['name', esc(String(k.name))], ['ack floor', String(k.ackFloor)], ['pending', String(k.pending)], ['redelivered', String(k.redelivered)], ['lag', String(k.lag)], ['dead letters', String(k.dlq)]]))
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
    return row(`data-bridge="${esc(b.name)}"`, [['name', esc(b.name)], ['state', `<span class="state ${b.state === 'connected' ? 'ok' : 'warn'}" title="${esc(b.lastError ?? '')}">${esc(state)}</span>`],
      ['backlog', String(b.backlog.messages), 'backlog'], ['bytes', fmtBytes(b.backlog.bytes)], ['oldest unsent', b.backlog.oldestSeconds > 0 ? fmtUptime(b.backlog.oldestSeconds) : '—'],
      ['acks/s', fmtRate(b.ackRate)], ['acked', String(b.acked), 'acked'], ['refused', String(b.refused)], ['dead letters', String(b.deadLettered)], ['reconnects', String(b.reconnects)]])
  }).join('') || '<tr><td colspan="10">no bridges (declared in the config file, docs/bridges.md)</td></tr>'
}

interface Connection { id: number; clientId: string | null; user: string | null; protocol: string; version: number | null; remote: string; subscriptions: string[]; queuedBytes: number; messagesIn: number; messagesOut: number }

async function refreshConnections(): Promise<void> {
  const { connections } = await get<{ connections: Connection[] }>('/api/connections')
  $('conn-rows').innerHTML = connections.map((c) => row(`data-connection="${c.id}"`, [
    ['client id', esc(c.clientId ?? '(connecting)')], ['user', esc(c.user ?? '')], ['protocol', `${esc(c.protocol)}${c.version ? ` v${c.version}` : ''}`],
    ['address', esc(c.remote)], ['subscriptions', esc(c.subscriptions.join(', '))], ['in / out', `${c.messagesIn} / ${c.messagesOut}`], ['queued', fmtBytes(c.queuedBytes)],
    ['', `<button class="kick" data-id="${c.id}" data-client="${esc(c.clientId ?? '')}">kick</button>`],
  ])).join('') || '<tr><td colspan="8">no MQTT connections</td></tr>'
}

// kick: DELETE /api/connections/<id> (an MQTT 5 client hears DISCONNECT 0x98; its will is published)
$('conn-rows').addEventListener('click', (e) => {
  const button = (e.target as HTMLElement).closest('button.kick') as HTMLButtonElement | null
  if (button === null || !confirm(`Disconnect ${button.dataset.client || 'this connection'}?`)) return
  button.disabled = true
  void fetch(`/api/connections/${button.dataset.id}`, { method: 'DELETE', ...(token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }) }).then(async (res) => {
    if (!res.ok) {
      const body = await res.json().catch(() => ({})) as { error?: { code?: string; message?: string } }
      $('status').textContent = `kick refused: ${body.error?.code ?? res.status}`
      $('status').className = 'badge'
    }
    await refreshConnections()
  })
})

// --- live tail and the subject tree ----------------------------------------------------------------

const bus = connect(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`, token === undefined ? {} : { token })
bus.onopen = () => { $('status').textContent = 'live'; $('status').className = 'badge ok' }
bus.onclose = () => { $('status').textContent = 'reconnecting…'; $('status').className = 'badge' }
let unsubscribe: (() => void) | null = null

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
  unsubscribe = bus.subscribe(filter, (m) => {
    const li = document.createElement('li')
    li.innerHTML = `<time>${new Date().toLocaleTimeString()}</time><span class="subject">${esc(m.subject)}</span> ${esc(preview(m))}`
    const list = $('messages')
    list.prepend(li)
    while (list.children.length > 200) list.lastElementChild?.remove()
  })
}

/** The busiest subjects, counted by the server (every message, not only those the tail sees). */
async function refreshSubjects(): Promise<void> {
  const { subjects } = await get<{ subjects: Array<{ subject: string; rate: number }> }>('/api/subjects?limit=30')
  $('tree').innerHTML = subjects.map(({ subject, rate }) => `<li><span>${esc(subject)}</span><span class="rate">${fmtRate(rate)}</span></li>`).join('') || '<li>no messages in the last minutes</li>'
}

$('tail-form').addEventListener('submit', (e) => { e.preventDefault(); watch(($('filter') as HTMLInputElement).value.trim() || '#') })
watch('#')

async function tick(): Promise<void> {
  // rates first: the streams' msg/s column reads them
  await Promise.all([refreshStats(), refreshRates().then(refreshStreams), refreshBridges(), refreshConnections(), refreshSubjects()]).catch((err: unknown) => {
    $('status').textContent = `error: ${(err as Error).message}`
    $('status').className = 'badge'
  })
}
void tick()
setInterval(() => { void tick() }, 2000)
