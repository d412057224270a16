import { isUtf8 } from 'node:buffer'
import type { IncomingMessage } from 'node:http'
import { packetForEntry, type Listener, type RoutedPacket, type RouteEntry } from '../router/router.ts'
import { EarlySubscriptions, readSubscribe } from './early-subscriptions.ts'
import { encodeDelivery, PlainSubscriptions, servablePlainSubscribe, subscriptionIds } from './plain-subscriptions.ts'
import { AedesLink, type LinkOwner } from './aedes-link.ts'
import { EdgebusError } from '../core/errors.ts'
import { decodePublishProperties, encodePublishQos0, findProperty, findPropertyOffset, PacketType, Prop, readVarint, subscriptionIdentifierProp, VarintResult, writeVarint, type PublishProperties } from './codec.ts'
import { PacketAssembler } from './packet-assembler.ts'
import { checkConnect, checkPacketProperties, checkTopics, qos0WithoutProperties, type PacketProblem } from './packet-check.ts'
import { connectAsks, keepAliveCap, plainConnect, type PlainConnect } from './plain-connect.ts'
import { OutgoingTopicAliases } from './topic-aliases.ts'
import { mayCarryMarker, restoreUserPropertyOrder, USER_PROPERTY_ORDER, userPropertyOrder, willUserPropertyOrder } from './user-property-order.ts'
import type { SessionOwner } from './session-registry.ts'
import { TokenBucket } from '../limits/token-bucket.ts'
import { ALLOW_ALL } from '../auth/acl.ts'
import { OPEN_PRINCIPAL, type Principal } from '../auth/security.ts'
import { parseSharedFilter, SHARE_PREFIX } from './shared-subscriptions.ts'
import { ConnectionStreams, parseStreamFilter, type StreamFilter, type StreamSubscriber } from './stream-subscriptions.ts'
import type { StreamManager } from '../stream/stream-manager.ts'
import type { Transport, TransportSink } from './transport.ts'
import type { MqttBroker, AedesClient } from './broker.ts'

/**
 * aedes drops a delivery whose per-broker counter is not above the last one it delivered to the
 * client (a cluster's duplicate filter). In one broker, counters are taken when a message is made
 * and a retained one waits for its store before it is routed, so a later message can overtake it
 * and the retained one was lost for live subscribers. We route each message once per client
 * (the Router merges overlapping subscriptions): no filter, and no map per connection.
 */
const NO_DEDUPE: object = new Proxy({}, { get: () => undefined, set: () => true, deleteProperty: () => true })

/** What this layer reads and sets on the aedes client of its connection. */
type AedesPeer = SessionOwner & { maximumPacketSize?: number; receiveMaximum?: number; duplicates?: object }

const State = { AWAITING_CONNECT: 0, CONNECTING: 1, CONNECTED: 2, CLOSED: 3 } as const
type StateValue = (typeof State)[keyof typeof State]

const EMPTY = Buffer.alloc(0)
const PINGRESP = Buffer.from([0xd0, 0x00])
/** MQTT 5 reason codes of the MQTT 3.1.1 CONNACK refusals 2, 4 and 5. */
const V5_REFUSALS: Record<number, number> = { 2: 0x85, 4: 0x86, 5: 0x87 }
/** How long a connection may take to send CONNECT (aedes' connectTimeout). */
const CONNECT_TIMEOUT_MS = 30_000
const noop = (): void => {}
const vi = new VarintResult()
/** Filters we serve ourselves: $share/, $stream/, $replay/ (after the '$'). */
const RESERVED = [Buffer.from(SHARE_PREFIX.slice(1)), Buffer.from('stream/'), Buffer.from('replay/')]

/** Whether a SUBSCRIBE/UNSUBSCRIBE in buf[start, end) may name a filter we serve ourselves. */
function hasReservedFilter(buf: Buffer, start: number, end: number): boolean {
  for (let at = buf.indexOf(0x24, start); at !== -1 && at < end; at = buf.indexOf(0x24, at + 1)) {
    for (const r of RESERVED) if (at + 1 + r.length <= end && buf.compare(r, 0, r.length, at + 1, at + 1 + r.length) === 0) return true
  }
  return false
}

let nextConnectionId = 1

/** A QoS 1 acknowledgement waiting its turn: code -1 while its streams are still writing. */
class AckSlot {
  code = -1
  constructor(readonly id: number) {}
}

/**
 * A PUBLISH that went to aedes and whose ack waits: for the streams that capture it, and (QoS 1)
 * until aedes has published it. aedes writes a QoS 1 PUBACK before it stores a retained message,
 * queues it for offline sessions and routes it; the client must not hear it before.
 */
class StoreWait {
  stored: Promise<unknown> | null = null
  /** -1 while storing; 0 stored; a reason code otherwise. */
  code = -1
  ack: Buffer | null = null
  /** QoS 1: aedes has published it (MqttBroker's `published` hook). */
  published = false
  constructor(readonly id: number, readonly qos: number) {}
}

/** The PUBACK/PUBREC reason code for a message a store (stream, MQTT state) did not take [MQTT-3.4.2.1]. */
export function refusalCode(err: unknown): number {
  if (err instanceof EdgebusError) {
    // Quota exceeded: a stream's limit, or a full disk (space is a quota the operator can raise)
    if (err.code === 'ESTREAM_LIMIT' || err.code === 'EJOURNAL_FULL' || err.code === 'EPERSIST_FULL') return 0x97
    if (err.code === 'ERECORD_INVALID') return 0x99 // Payload format invalid (a field over its size limit)
  }
  return 0x80 // Unspecified error: the store could not write
}

/**
 * One client connection, whatever its transport. It owns the socket's reads and writes:
 * - reads: frames MQTT packets; QoS 0 PUBLISHes of a connected client take the fast path
 *   (routed here, bytes forwarded to subscribers); every other packet goes to aedes in order.
 * - writes: everything for the client (fast-path frames and aedes' packets) goes through one
 *   queue that is written once per event-loop turn, bounded by the slow-consumer limits.
 * - a plain CONNECT (clean, no will: plain-connect.ts) is answered here, and the client is served
 *   without an aedes client (about 5 KB of heap less per idle device) for as long as it only
 *   publishes on the fast path, pings or disconnects. Its first other packet promotes it: the
 *   CONNECT is replayed to aedes (its CONNACK swallowed), then that packet and the rest follow.
 */
export class ClientConnection implements TransportSink, LinkOwner, StreamSubscriber {
  readonly id = nextConnectionId++
  readonly transport: Transport
  /** The stream aedes reads and writes: made at a CONNECT that aedes answers, or at promotion. */
  link: AedesLink | null = null
  readonly #broker: MqttBroker
  /** Until CONNECT: the HTTP request of a WebSocket, for aedes. */
  #req: IncomingMessage | undefined
  /** A client served without aedes: its CONNECT (replayed to aedes at promotion) and identifier. */
  #plain: PlainConnect | null = null
  #plainConnect: Buffer | null = null
  /** The will's user properties as they came, when aedes would reorder them (user-property-order.ts). */
  willUserProperties: Buffer | null = null
  /** The Keep Alive its CONNECT asked for (seconds; see mqtt.maxKeepAlive). */
  keepAliveAsked = 0
  /** While aedes takes over a plain client: its CONNACK is not the client's (it had ours). */
  promoting = false
  /** From the promotion of a plain client until aedes is ready: the client is connected all along. */
  #handingOver = false
  /** Connect timeout, then (plain clients) the keepalive [MQTT-3.1.2-24]. */
  #timer: NodeJS.Timeout | null = null
  #state: StateValue = State.AWAITING_CONNECT
  /** The aedes client once CONNECT succeeded. */
  client: AedesClient | null = null
  version = 4
  /** MQTT 5 Maximum Packet Size of the client (0 = no limit). */
  #maxOutgoingPacket = 0

  // read side
  #partial: Buffer | null = null
  #held: Buffer[] = [] // packets that arrived between CONNECT and CONNACK
  /**
   * Input that waits until pending acks are sent, so a packet for aedes cannot overtake them, or
   * until aedes has answered the client's SUBSCRIBE/UNSUBSCRIBE, so a PUBLISH that follows is
   * routed by the subscriptions as they are then.
   */
  #deferred: Buffer | null = null
  /** SUBSCRIBE/UNSUBSCRIBE packets with aedes that it has not answered yet. */
  #subscribing = 0
  /** QoS 1 acks of the fast path waiting for streams, in PUBLISH order. */
  #acks: AckSlot[] | null = null
  /** QoS 1/2 PUBLISHes sent to aedes whose ack waits for a stream, in order. */
  #storeWaits: StoreWait[] | null = null
  /** aedes' PUBACK/PUBRECs in the order aedes wrote them, held while one ahead waits for a stream. */
  #aedesAcks: Array<Buffer | StoreWait> | null = null
  /** User properties of QoS 1/2 PUBLISHes for aedes that it would reorder, by packet id, in order. */
  #userPropertyOrders: Array<{ id: number; entries: Buffer }> | null = null
  /** Topic aliases we use towards the client, when its CONNECT allows them (topic-aliases.ts). */
  #outAliases: OutgoingTopicAliases | null = null
  /** Topic aliases of this client, mirrored from its PUBLISHes (aedes resolves them). */
  #aliases: Map<number, string> | null = null
  #readPaused = false

  // write side
  #out: Buffer[] = []
  #outBytes = 0
  /**
   * The last forwarded range, not yet in #out: a publisher's packets that arrive together lie
   * side by side in its read buffer, so consecutive ones grow one range (numbers only) instead of
   * making a Buffer per message.
   */
  #rangeSrc: Buffer | null = null
  #rangeStart = 0
  #rangeEnd = 0
  #marked = false
  #waitingDrain = false

  // what aedes writes, cut into whole packets, and MQTT 5 flow control around it
  #fromAedes: PacketAssembler | null = null
  #onAedesPacket: ((packet: Buffer) => void) | null = null
  /** QoS 1/2 PUBLISHes sent to the client and not yet acknowledged by it. */
  #outInflight = 0
  /** PUBLISHes held back by the client's Receive Maximum [MQTT-3.3.4-7]. */
  #outHeld: Buffer[] = []
  #outHeldBytes = 0
  /** QoS 1/2 PUBLISHes received from the client and not yet acknowledged by us. */
  #inInflight = 0
  /** QoS 2 packet ids we discarded as too large: aedes' PUBREL for them is answered here. */
  #discardedQos2: Set<number> | null = null
  /** Its `$stream/` and `$replay/` subscriptions (stream-subscriptions.ts). */
  #streamSubs: ConnectionStreams | null = null
  /** Router entries of SUBSCRIBEs read and not yet answered by aedes (early-subscriptions.ts). */
  #early: EarlySubscriptions | null = null
  /** QoS 0 subscriptions answered here, without aedes (plain-subscriptions.ts); they stay after a promotion. */
  #plainSubs: PlainSubscriptions | null = null
  /** SUBSCRIBE/UNSUBSCRIBE ids whose reserved entries we answered: our reason codes, null where aedes answers. */
  #ackMerges: Map<number, Array<number | null>> | null = null

  /** limits.publishRate: the client's message budget, and the timer resuming its reads. */
  readonly #publishBudget: TokenBucket | null
  #throttleTimer: NodeJS.Timeout | null = null
  /** Disconnects the client when its access token expires. */
  #expiry: NodeJS.Timeout | null = null
  /** Input waiting for the publish budget, and whether its first PUBLISH has paid already. */
  #throttled: Buffer | null = null
  #prepaid = false

  // fast path topic cache: publishers usually repeat their topic
  #lastTopicBytes: Buffer = EMPTY
  #lastTopic = ''

  /** Who the client is and what it may do (set when aedes authenticates the CONNECT). */
  principal: Principal = OPEN_PRINCIPAL
  /** The fast path's cached ACL decision for #lastTopic. */
  #lastTopicAllowed = true

  /** Counters, read by stats and tests. */
  messagesIn = 0
  messagesOut = 0
  droppedQos0 = 0

  constructor(broker: MqttBroker, transport: Transport, req?: IncomingMessage) {
    this.#broker = broker
    this.transport = transport
    const rate = broker.limits.publishRate
    this.#publishBudget = rate > 0 ? new TokenBucket(rate, rate, Date.now()) : null
    this.#req = req
    this.#timer = setTimeout(() => {
      if (this.#state === State.AWAITING_CONNECT) this.destroy()
    }, CONNECT_TIMEOUT_MS)
    this.#timer.unref()
  }

  /** Hands the connection to aedes from here on. */
  #attachAedes(): AedesLink {
    const link = new AedesLink(this)
    this.link = link
    this.#fromAedes = new PacketAssembler()
    this.#onAedesPacket = (packet: Buffer): void => this.#sendAedesPacket(packet)
    this.#broker.aedes.handle(link as never, this.#req as never)
    this.#req = undefined
    const peer = this.#peer
    if (peer !== undefined) peer.duplicates = NO_DEDUPE
    return link
  }

  /**
   * A plain CONNECT, answered here: the identity is checked as aedes would (MQTT 3.1.1 return
   * codes, MQTT 5 reason codes), and the client is connected without an aedes client.
   */
  #connectPlain(connect: PlainConnect, packet: Buffer): void {
    this.#state = State.CONNECTING
    this.version = connect.level
    this.#plain = connect
    this.#plainConnect = Buffer.from(packet)
    this.#req = undefined // aedes reads it for proxy headers only (trustProxy, which edgebus does not set)
    this.#maxOutgoingPacket = connect.maximumPacketSize
    const broker = this.#broker
    broker.authenticate(this, connect.clientId, connect.username, connect.password, null).then((code) => {
      if (this.#state === State.CLOSED) return
      if (code !== 0) {
        // 3.1.1 return codes 2, 4, 5; MQTT 5 reason codes 0x85, 0x86, 0x87
        this.#plain = null
        this.#enqueue(Buffer.from(connect.level === 5 ? [0x20, 0x03, 0x00, V5_REFUSALS[code] ?? 0x87, 0x00] : [0x20, 0x02, 0x00, code]))
        this.closeFromAedes()
        return
      }
      broker.holdPlain(this, connect.clientId)
      const cap = keepAliveCap(connect.keepalive, broker.limits.maxKeepAlive ?? 0)
      this.#enqueue(broker.plainConnack(connect.level, cap > 0))
      this.#keepalive(cap > 0 ? cap : connect.keepalive)
      this.#state = State.CONNECTED
      const held = this.#held
      this.#held = []
      for (const chunk of held) this.#read(chunk)
    }, (err: unknown) => {
      broker.log.error({ conn: this.id, err: (err as Error)?.stack ?? String(err) }, 'authentication failed unexpectedly: closing the connection')
      this.destroy()
    })
  }

  /** [MQTT-3.1.2-24] A plain client silent for one and a half keepalives is closed. */
  #keepalive(seconds: number): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    if (seconds === 0) return
    this.#timer = setTimeout(() => {
      if (this.#state === State.CLOSED) return
      this.#broker.log.info({ client: this.clientId }, 'keepalive timeout: closing')
      this.destroy()
    }, seconds * 1500 + 1)
    this.#timer.unref()
  }

  /**
   * A plain client sent a packet aedes must handle: aedes gets its CONNECT (it does not
   * authenticate again), and `rest` waits until aedes is ready.
   */
  #promote(rest: Buffer): void {
    const connect = this.#plainConnect as Buffer
    this.#plainConnect = null
    this.#keepalive(0) // aedes keeps it from now on
    this.#state = State.CONNECTING
    this.promoting = true
    this.#handingOver = true
    this.#held.push(rest)
    this.#attachAedes().push(connect)
  }

  /** A client with our identifier connected (after authentication) [MQTT-3.1.4-2]. */
  takenOver(): void {
    this.#disconnectWith(0x8e, 'session taken over')
  }

  /** Its rights changed at run time (issue 20): checks from now on follow `p`, the fast path's cached one too. */
  reauthorize(p: Principal): void {
    this.principal = p
    this.#lastTopicBytes = EMPTY
  }

  /** The server is going away (reason 0x8B for MQTT 5 clients). */
  shutDown(reasonCode: number): void {
    if (this.#state === State.CONNECTED) this.#disconnectWith(reasonCode, 'server shutting down')
    else this.destroy()
  }

  get closed(): boolean {
    return this.#state === State.CLOSED
  }

  get connected(): boolean {
    return this.#state === State.CONNECTED
  }

  /**
   * Bytes the client has not taken: what the transport holds, plus our queue while the transport
   * refuses more. A burst queued within one event-loop turn is not slowness, so it does not count
   * until the flush finds the transport full.
   */
  get queuedBytes(): number {
    const held = this.#outHeldBytes + this.transport.bufferedAmount
    return this.#waitingDrain ? this.#outBytes + held : held
  }

  /** aedes accepted the CONNECT and sent CONNACK. */
  onReady(client: AedesClient): void {
    if (this.#state === State.CLOSED) return
    if (this.#plain !== null) {
      this.#broker.releasePlain(this, this.#plain.clientId)
      this.#plain = null
    }
    this.client = client
    this.#handingOver = false
    this.version = client.version ?? 4
    this.#maxOutgoingPacket = client.maximumPacketSize ?? 0
    this.#state = State.CONNECTED
    const held = this.#held
    this.#held = []
    for (const packet of held) this.#read(packet)
    this.#early?.ready()
  }

  /** A SUBSCRIBE was read: its filters are routed to this connection from now on (early-subscriptions.ts). */
  #reserve(subscribe: Buffer): void {
    const broker = this.#broker
    this.#early ??= new EarlySubscriptions(this, broker.router, (filter, subscribed) => broker.subscriptionRefusal(this, filter, subscribed + this.plainSubscriptionCount) === null)
    this.#early.reserve(subscribe, this.version === 5)
    // aedes takes over a filter we served (after a promotion): its early entry routes it from now on
    const plain = this.#plainSubs
    if (plain !== null) for (const sub of readSubscribe(subscribe, this.version === 5)?.subs ?? []) plain.unsubscribe(sub.filter)
  }

  /** How many subscriptions this connection serves without aedes. */
  get plainSubscriptionCount(): number {
    return this.#plainSubs?.size ?? 0
  }

  /** The subscriptions served without aedes, for the clients API. */
  plainSubscriptionList(): Array<{ filter: string; qos: number }> {
    return this.#plainSubs?.list() ?? []
  }

  /**
   * A plain client's SUBSCRIBE, answered here in the turn it is read (plain-subscriptions.ts):
   * the checks of aedes' authorizeSubscribe, its SUBACK to the byte, then the retained messages
   * [MQTT-3.3.1-9..11]. False: not one this layer serves, aedes takes the client over.
   */
  #subscribePlain(packet: Buffer): boolean {
    const v5 = this.version === 5
    const read = servablePlainSubscribe(packet, v5)
    if (read === null) return false
    const broker = this.#broker
    const subs = this.#plainSubs ??= new PlainSubscriptions(this, broker.router)
    const codes: number[] = []
    const retained: string[] = []
    for (const sub of read.subs) {
      const refusal = broker.subscriptionRefusal(this, sub.filter, subs.has(sub.filter) ? -1 : subs.size)
      if (refusal !== null) {
        broker.noteSubscriptionRefusal(this, this.clientId, sub.filter, refusal)
        codes.push(v5 ? 0x87 : 0x80) // what aedes answers for any refusal of authorizeSubscribe
        continue
      }
      const isNew = subs.subscribe(sub, read.si)
      codes.push(sub.qos)
      if (sub.rh === 0 || (sub.rh === 1 && isNew)) retained.push(sub.filter)
    }
    this.#enqueue(ackPacket(0x90, read.id, v5, codes))
    if (retained.length > 0) this.#sendRetained(retained, read.si)
    return true
  }

  /** The retained messages of new subscriptions, at QoS 0 (the QoS granted), retain set [MQTT-3.3.1-8]. */
  #sendRetained(filters: string[], si: number): void {
    const v5 = this.version === 5
    const sis = si !== 0 ? [si] : null
    const send = async (): Promise<void> => {
      for await (const packet of this.#broker.retainedMessages(filters)) {
        if (this.#state === State.CLOSED) return
        // none of these filters starts with '$': a '$' topic matched a leading wildcard [MQTT-4.7.2-1]
        if (packet.topic.charCodeAt(0) === 0x24 || !this.canReceive(packet.topic)) continue
        const expiry = (packet as { messageExpiry?: number }).messageExpiry
        this.#enqueueQos0(encodeDelivery(packet, v5, true, sis, expiry === undefined ? undefined : Math.ceil((expiry - Date.now()) / 1000)))
      }
    }
    send().catch((err: unknown) => this.#broker.log.error({ client: this.clientId, err: (err as Error)?.stack ?? String(err) }, 'retained messages could not be read for a SUBSCRIBE'))
  }

  /**
   * An UNSUBSCRIBE of filters served here: answered here when aedes holds none of them (a plain
   * client's always), else ours go and aedes answers for the rest, our reason codes merged into
   * its UNSUBACK. False: malformed, aedes decides.
   */
  #unsubscribePlain(packet: Buffer): boolean | Buffer {
    const v5 = this.version === 5
    readVarint(packet, 1, packet.length, vi)
    const bodyStart = 1 + vi.length
    const end = bodyStart + vi.value
    if (vi.length <= 0 || bodyStart + 2 > end) return false
    const id = packet.readUInt16BE(bodyStart)
    let o = bodyStart + 2
    if (v5) {
      if (readVarint(packet, o, end, vi).length <= 0) return false
      o += vi.length + vi.value
    }
    const headEnd = o
    const filters: Array<{ filter: string; start: number; end: number }> = []
    while (o + 2 <= end) {
      const len = packet.readUInt16BE(o)
      if (o + 2 + len > end) return false
      filters.push({ filter: packet.toString('utf8', o + 2, o + 2 + len), start: o, end: o + 2 + len })
      o += 2 + len
    }
    if (filters.length === 0) return false
    const plain = this.#plainSubs
    const aedesHolds = (f: string): boolean => this.link !== null && (plain === null || !plain.has(f))
    const codes = filters.map((f) => (aedesHolds(f.filter) ? null : plain?.unsubscribe(f.filter) === true ? 0x00 : 0x11))
    if (codes.every((c) => c !== null)) {
      this.#enqueue(ackPacket(0xb0, id, v5, codes as number[]))
      return true
    }
    if (codes.every((c) => c === null)) return packet
    ;(this.#ackMerges ??= new Map()).set(id, codes)
    const body = Buffer.concat([packet.subarray(bodyStart, headEnd), ...filters.filter((_f, i) => codes[i] === null).map((f) => packet.subarray(f.start, f.end))])
    return Buffer.concat([Buffer.from([packet[0] as number]), varintBytes(body.length), body])
  }

  /** A message routed by the Router's listener to a subscription served here (plain-subscriptions.ts). */
  deliverRouted(entry: RouteEntry, packet: RoutedPacket): void {
    if (!this.#writable) return
    if (entry.nl && packet.clientId === this.clientId) return // [MQTT-3.8.3-3]
    const c0 = entry.filter.charCodeAt(0)
    if ((c0 === 0x23 || c0 === 0x2b) && packet.topic.charCodeAt(0) === 0x24) return // [MQTT-4.7.2-1]
    if (!this.canReceive(packet.topic)) return
    // [MQTT-3.3.1-12/13] Retain As Published, else the flag is cleared on live deliveries
    this.#enqueueQos0(encodeDelivery(packet, this.version === 5, entry.rap && packet.retain, subscriptionIds(packet, entry)))
  }

  /** Router.claims: whether aedes' listener `fn` is the subscription an early entry of ours was reserved for. */
  claimsEarly(entry: RouteEntry, fn: Listener): boolean {
    return this.#early?.claims(entry, fn) === true
  }

  /** aedes answered a SUBSCRIBE of these filters. */
  subscribed(filters: readonly string[]): void {
    const early = this.#early
    if (early === null) return
    early.settled(filters)
    if (early.idle) this.#early = null
  }

  /** Whether the fast path may write to the client: connected, also while aedes takes a plain client over. */
  get #writable(): boolean {
    return this.#state === State.CONNECTED || (this.#handingOver && this.#state === State.CONNECTING)
  }

  // --- read side ----------------------------------------------------------------------------

  onData(chunk: Buffer): void {
    if (this.#state === State.CLOSED) return
    this.#broker.stats.bytesIn += chunk.length
    // a plain client's keepalive: any packet counts
    if (this.#plain !== null) this.#timer?.refresh()
    this.#read(chunk)
  }

  /** Input, counted already (also what waited: held, deferred or throttled). */
  #read(chunk: Buffer): void {
    if (this.#state === State.CLOSED) return
    if (this.#throttled !== null) {
      // waiting for the publish budget: keep the order
      this.#throttled = Buffer.concat([this.#throttled, chunk])
      return
    }
    if (this.#deferred !== null) {
      this.#deferred = Buffer.concat([this.#deferred, chunk])
      return
    }
    if (this.#partial !== null) {
      chunk = Buffer.concat([this.#partial, chunk])
      this.#partial = null
    }
    const len = chunk.length
    const maxPacket = this.#broker.limits.maxPacketSize
    let o = 0
    let runStart = -1 // start of a run of packets for aedes, pushed in one piece
    let fastSeen = false
    const budget = this.#publishBudget
    const now = budget === null ? 0 : Date.now()
    while (o < len) {
      if (o + 2 > len) break
      readVarint(chunk, o + 1, len, vi)
      if (vi.length === 0) break
      if (vi.length < 0) {
        // [MQTT-1.5.5-1] a Remaining Length of more than four bytes is malformed
        this.#badPacket({ code: 0x81, why: 'malformed Remaining Length' })
        return
      }
      const headerLen = 1 + vi.length
      const total = headerLen + vi.value
      if (total > maxPacket) {
        this.#packetTooLarge(total)
        return
      }
      if (o + total > len) break
      const b0 = chunk[o] as number
      const type = b0 >> 4
      if (this.#state === State.CONNECTED) {
        // MQTT 5 property blocks are checked before anything reads them (packet-check.ts)
        if (this.version === 5 && type >= PacketType.PUBLISH && type !== PacketType.PINGREQ && !(b0 === 0x30 && qos0WithoutProperties(chunk, o + headerLen, o + total))) {
          const problem = checkPacketProperties(chunk, o, o + total, this.client?.sessionExpiryInterval ?? (this.#plain !== null ? 0 : -1))
          if (problem !== null) {
            if (runStart !== -1) this.#toAedes(chunk.subarray(runStart, o))
            this.#badPacket(problem)
            return
          }
        }
        if (type === PacketType.PUBLISH) {
          if (budget !== null) {
            const wait = this.#prepaid ? 0 : budget.take(now)
            this.#prepaid = false
            if (wait > 0) {
              // limits.publishRate: this one and the rest wait for the budget (see #throttle)
              if (runStart !== -1) this.#toAedes(chunk.subarray(runStart, o))
              this.#throttle(chunk.subarray(o), wait)
              return
            }
          }
          // counted here, whichever path the message takes
          this.messagesIn++
          this.#broker.stats.messagesIn++
        }
        if (type === PacketType.PUBLISH && this.#subscribing > 0) {
          // routed once aedes has taken the subscriptions sent before it (see #readDeferred)
          if (runStart !== -1) this.#toAedes(chunk.subarray(runStart, o))
          this.#defer(chunk.subarray(o), budget !== null)
          return
        }
        // QoS 0 (no DUP, no RETAIN) and QoS 1 without RETAIN: the fast path
        if ((b0 === 0x30 && this.#fastPublish(chunk, o, headerLen, o + total, 0)) ||
          ((b0 & 0xf7) === 0x32 && this.#inInflight === 0 && this.#fastPublish(chunk, o, headerLen, o + total, 1))) {
          if (runStart !== -1) { this.#toAedes(chunk.subarray(runStart, o)); runStart = -1 }
          fastSeen = true
          o += total
          continue
        }
        if (this.link === null) {
          // a plain client (see #connectPlain): what is not on the fast path
          // (reserved flags, or a body where there is none: aedes refuses them)
          if (b0 === 0xc0 && total === 2) {
            this.#enqueue(PINGRESP)
            o += total
            continue
          }
          if (b0 === 0xe0 && (total === 2 || this.version === 5)) {
            // no will to discard, no session to end: the client goes [MQTT-3.14.4-1]
            this.closeFromAedes()
            return
          }
          // reserved header flags other than 0010 are aedes' to refuse [MQTT-3.8.1-1] [MQTT-3.10.1-1]
          if (b0 === 0x82 || b0 === 0xa2) {
            const problem = checkTopics(chunk, o, o + total, this.version)
            if (problem !== null) {
              this.#badPacket(problem)
              return
            }
            const packet = chunk.subarray(o, o + total)
            if (b0 === 0x82 ? this.#subscribePlain(packet) : this.#unsubscribePlain(packet) === true) {
              o += total
              continue
            }
          }
          if (type === PacketType.PUBLISH) this.#uncount(budget !== null) // read again once aedes is ready
          if (type === PacketType.SUBSCRIBE) this.#reserve(chunk.subarray(o, o + total))
          this.#promote(chunk.subarray(o))
          return
        }
        // what aedes gets: topics and filters as the spec wants them (mqtt-packet is lenient)
        if (type === PacketType.PUBLISH || type === PacketType.SUBSCRIBE || type === PacketType.UNSUBSCRIBE) {
          const problem = checkTopics(chunk, o, o + total, this.version)
          if (problem !== null) {
            if (runStart !== -1) this.#toAedes(chunk.subarray(runStart, o))
            this.#badPacket(problem)
            return
          }
        }
        if (type === PacketType.PUBLISH && (b0 & 0x06) !== 0 && this.#acks !== null) {
          // a QoS 1/2 PUBLISH for aedes would be acked before the stream acks we still owe
          if (runStart !== -1) this.#toAedes(chunk.subarray(runStart, o))
          this.#defer(chunk.subarray(o), budget !== null)
          return
        }
        if (type >= PacketType.PUBLISH && type <= PacketType.PUBCOMP && !this.#flowFromClient(chunk, o, type, b0, headerLen)) {
          if (runStart !== -1) this.#toAedes(chunk.subarray(runStart, o))
          return
        }
        if (type === PacketType.PUBACK && this.#streamSubs !== null && total >= headerLen + 2 &&
          this.#streamSubs.onPuback(chunk.readUInt16BE(o + headerLen), total > headerLen + 2 ? chunk[o + headerLen + 2] as number : 0)) {
          // the ack of a stream delivery: ours, aedes never sent that packet id
          if (runStart !== -1) { this.#toAedes(chunk.subarray(runStart, o)); runStart = -1 }
          o += total
          continue
        }
        if ((type === PacketType.SUBSCRIBE || type === PacketType.UNSUBSCRIBE) && hasReservedFilter(chunk, o, o + total)) {
          if (runStart !== -1) { this.#toAedes(chunk.subarray(runStart, o)); runStart = -1 }
          const forAedes = this.#interceptReserved(chunk.subarray(o, o + total), type)
          if (forAedes !== null) {
            if (type === PacketType.SUBSCRIBE) this.#reserve(forAedes)
            this.#subscribing++
            this.#toAedes(forAedes)
          }
          o += total
          continue
        }
        if (b0 === 0xa2 && this.#plainSubs !== null) {
          // filters we served before aedes took the client over: ours to answer (see #unsubscribePlain)
          const packet = chunk.subarray(o, o + total)
          const forAedes = this.#unsubscribePlain(packet)
          if (forAedes === true || (forAedes !== false && forAedes !== packet)) {
            if (runStart !== -1) { this.#toAedes(chunk.subarray(runStart, o)); runStart = -1 }
            if (forAedes !== true) {
              this.#subscribing++
              this.#toAedes(forAedes)
            }
            o += total
            continue
          }
        }
        if (type === PacketType.SUBSCRIBE || type === PacketType.UNSUBSCRIBE) this.#subscribing++
        if (type === PacketType.SUBSCRIBE) this.#reserve(chunk.subarray(o, o + total))
        if (runStart === -1) runStart = o
      } else if (this.#state === State.AWAITING_CONNECT) {
        if (type === PacketType.CONNECT) {
          const packet = chunk.subarray(o, o + total)
          const problem = checkConnect(packet)
          if (problem !== null) {
            this.#badPacket(problem, problem.level)
            return
          }
          if (this.#timer !== null) clearTimeout(this.#timer)
          this.#timer = null
          const asks = connectAsks(packet)
          this.keepAliveAsked = asks.keepAlive
          if (asks.topicAliasMaximum > 0) this.#outAliases = new OutgoingTopicAliases(asks.topicAliasMaximum)
          const plain = plainConnect(packet)
          if (plain !== null && this.#broker.mayServePlain(plain.clientId)) {
            this.#connectPlain(plain, packet)
            if (o + total < len) this.#held.push(chunk.subarray(o + total))
            return
          }
          this.#state = State.CONNECTING
          this.willUserProperties = willUserPropertyOrder(packet)
        }
        // aedes answers the CONNECT (and closes a connection that starts with another packet)
        if (this.link === null) this.#attachAedes()
        if (runStart === -1) runStart = o
      } else {
        // CONNECTING: hold until aedes has answered the CONNECT, so nothing overtakes it
        if (runStart !== -1) { this.#toAedes(chunk.subarray(runStart, o)); runStart = -1 }
        this.#held.push(chunk.subarray(o))
        o = len
        break
      }
      o += total
    }
    if (runStart !== -1) this.#toAedes(chunk.subarray(runStart, o))
    if (o < len) this.#partial = chunk.subarray(o)
    // packets aedes did not see still count as activity for its keepalive timer
    if (fastSeen) this.client?._keepaliveTimer?.refresh()
  }

  /**
   * The PUBLISH at the start of `rest` and what follows wait in #deferred (see #readDeferred),
   * and reading pauses.
   */
  #defer(rest: Buffer, paid: boolean): void {
    this.#uncount(paid)
    this.#deferred = rest
    if (!this.#readPaused) { this.#readPaused = true; this.transport.pause() }
  }

  /** A PUBLISH counted (and paid for) in #read is read again later: counted then, its token already paid. */
  #uncount(paid: boolean): void {
    this.messagesIn--
    this.#broker.stats.messagesIn--
    if (paid) this.#prepaid = true
  }

  /**
   * limits.publishRate: a client over its budget is slowed, not disconnected: what it sent from
   * this PUBLISH on waits, its reads pause until the budget has refilled (TCP pushes back on it),
   * and the event is counted. The waiting PUBLISH already paid for its token.
   */
  #throttle(rest: Buffer, wait: number): void {
    this.#broker.stats.throttled++
    this.#throttled = rest
    this.transport.pause()
    this.#throttleTimer = setTimeout(() => {
      this.#throttleTimer = null
      const held = this.#throttled
      this.#throttled = null
      if (this.#state === State.CLOSED) return
      if (!this.#readPaused) this.transport.resume()
      if (held !== null) this.#continueThrottled(held)
    }, wait)
  }

  /** Reads what waited for the publish budget; its first PUBLISH has its token already. */
  #continueThrottled(held: Buffer): void {
    this.#prepaid = true
    this.#read(held)
  }

  #toAedes(bytes: Buffer): void {
    if (!(this.link as AedesLink).push(bytes) && !this.#readPaused) {
      this.#readPaused = true
      this.transport.pause()
    }
  }

  resumeReading(): void {
    if (this.#readPaused) {
      this.#readPaused = false
      if (this.#throttleTimer === null) this.transport.resume()
    }
  }

  /**
   * Routes a QoS 0 or QoS 1 PUBLISH without aedes. Returns false to hand the packet to aedes instead.
   * QoS 1 is acknowledged here when no persistent session subscribes to the topic: aedes would only
   * route it and answer PUBACK, at ten times the cost.
   */
  #fastPublish(buf: Buffer, start: number, headerLen: number, end: number, qos: 0 | 1): boolean {
    const broker = this.#broker
    let o = start + headerLen
    if (o + 2 > end) return false
    const topicLen = buf.readUInt16BE(o)
    const topicStart = o + 2
    const topicEnd = topicStart + topicLen
    if (topicLen === 0 || topicEnd > end) return false // topic alias or malformed: aedes decides
    if (buf[topicStart] === 0x24) return false // '$' topics: aedes' publish authorization applies
    o = topicEnd
    let packetId = 0
    if (qos === 1) {
      if (o + 2 > end) return false
      packetId = buf.readUInt16BE(o)
      if (packetId === 0) return false // [MQTT-2.3.1-1] malformed: aedes closes the connection
      o += 2
    }
    let propsStart = o
    let propsEnd = o
    if (this.version === 5) {
      readVarint(buf, o, end, vi)
      if (vi.length <= 0) return false
      propsStart = o + vi.length
      propsEnd = propsStart + vi.value
      if (propsEnd > end) return false
      // topic aliases are resolved by aedes' per-connection alias map
      if (propsEnd > propsStart && findProperty(buf, propsStart, propsEnd, Prop.TOPIC_ALIAS)) return false
    }
    const topic = this.#topicString(buf, topicStart, topicEnd)
    if (topic === null) return false
    if (!this.#lastTopicAllowed) {
      // denied by the ACL: MQTT 5 hears 0x87 (QoS 1); MQTT 3.1.1 gets its normal ack and the message goes nowhere [MQTT-3.3.5-2]
      broker.security?.denied(this.principal, 'pub', topic, 'mqtt')
      if (qos === 1) this.#ack(packetId, null, this.version === 5 ? 0x87 : 0)
      return true
    }
    const plan = broker.router.match(topic)
    // a persistent session's QoS 1 messages are queued by aedes' persistence before delivery
    if (qos === 1 && broker.persistentSubscriptionMatches(topic)) return false
    // stores, internal listeners and aedes' QoS 1 deliveries need the properties decoded
    let properties: PublishProperties | undefined
    if (propsEnd > propsStart && (plan.slow > 0 || plan.stores > 0 || (qos === 1 && plan.reliable > 0))) {
      const decoded = decodePublishProperties(buf, propsStart, propsEnd)
      if (decoded === null) return false // a property a PUBLISH may not carry: aedes judges it
      properties = decoded
      // aedes' deliveries would regroup repeated user property names (user-property-order.ts)
      const ordered = decoded.userProperties === undefined ? null : userPropertyOrder(buf, propsStart, propsEnd)
      if (ordered !== null) (properties as Record<symbol, unknown>)[USER_PROPERTY_ORDER] = ordered
    }

    broker.router.counted(plan) // subject rates (router/subject-rates.ts)
    const entries = plan.entries
    let v4Frame: Buffer | null = null
    let v5Frame: Buffer | null = null
    let packet: RoutedPacket | null = null
    let stored: Promise<unknown> | null = null
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i] as RouteEntry
      const store = entry.store
      if (store !== null) {
        packet ??= this.#packetFor(topic, buf.subarray(propsEnd, end), qos, properties)
        const p = store.store(packet)
        // QoS 1 is acknowledged once every capturing stream holds it; QoS 0 carries no promise
        if (qos === 1) stored = stored === null ? p : Promise.all([stored, p])
        else p.catch(noop)
        continue
      }
      const target = entry.target as ClientConnection | null
      if (target !== null && target.principal.access !== ALLOW_ALL && !target.principal.access.canReceive(topic)) {
        broker.security?.denied(target.principal, 'deliver', topic, 'mqtt')
        continue
      }
      if (target === null || (qos === 1 && entry.qos > 0)) {
        // internal listeners, and QoS 1 deliveries (packet ids, retries): through aedes' function
        if (target !== null && ((entry.nl && target === this) || !target.#writable)) continue
        packet ??= this.#packetFor(topic, buf.subarray(propsEnd, end), qos, properties)
        entry.fn(packetForEntry(packet, entry), noop)
        continue
      }
      if (entry.nl && target === this) continue // [MQTT-3.8.3-3] No Local
      if (!target.#writable) continue
      // the bytes as they came: forwarded as a range of the publisher's read buffer
      if (qos === 0 && (target.version === 5) === (this.version === 5) && (target.version !== 5 || entry.si === 0)) {
        target.#enqueueQos0Range(buf, start, end)
        continue
      }
      let frame: Buffer
      if (target.version === 5) {
        if (entry.si !== 0) {
          // [MQTT-3.3.4-3] echo the Subscription Identifier (all of them, for merged subscriptions
          // [MQTT-3.3.4-4]): a frame of its own
          const ids = entry.sis === null ? subscriptionIdentifierProp(entry.si) : Buffer.concat(entry.sis.map(subscriptionIdentifierProp))
          frame = encodePublishQos0(buf.subarray(topicStart, topicEnd), buf.subarray(propsEnd, end),
            buf.subarray(propsStart, propsEnd), false, ids)
        } else {
          // a QoS 0 publish of an MQTT 5 client is forwarded as it came
          frame = v5Frame ??= this.version === 5 && qos === 0
            ? buf.subarray(start, end)
            : encodePublishQos0(buf.subarray(topicStart, topicEnd), buf.subarray(propsEnd, end), buf.subarray(propsStart, propsEnd), false)
        }
      } else {
        frame = v4Frame ??= this.version !== 5 && qos === 0
          ? buf.subarray(start, end)
          : encodePublishQos0(buf.subarray(topicStart, topicEnd), buf.subarray(propsEnd, end), null, false)
      }
      target.#enqueueQos0(frame)
    }
    if (qos === 1) this.#ack(packetId, stored)
    return true
  }

  /**
   * [MQTT-4.6.0-2] PUBACKs go out in the order of the PUBLISHes. An ack that waits for streams
   * queues, and every later ack of this connection queues behind it.
   */
  #ack(packetId: number, stored: Promise<unknown> | null, code = 0): void {
    if (stored === null && this.#acks === null) {
      this.#sendAck(0x40, packetId, code)
      return
    }
    const slot = new AckSlot(packetId)
    ;(this.#acks ??= []).push(slot)
    if (stored === null) {
      slot.code = code
      this.#releaseAcks()
      return
    }
    stored.then(() => { slot.code = 0 }, (err: unknown) => { slot.code = refusalCode(err) })
      .then(() => this.#releaseAcks())
  }

  #releaseAcks(): void {
    const acks = this.#acks
    if (acks === null) return
    while (acks.length > 0 && (acks[0] as AckSlot).code !== -1) {
      const slot = acks.shift() as AckSlot
      this.#sendAck(0x40, slot.id, slot.code)
    }
    if (acks.length === 0) {
      this.#acks = null
      this.#readDeferred()
    }
  }

  /** Reads the input that waited behind our acks or aedes' SUBACKs (see #read), once nothing holds it. */
  #readDeferred(): void {
    const deferred = this.#deferred
    if (deferred === null || this.#acks !== null || this.#subscribing > 0) return
    this.#deferred = null
    this.resumeReading()
    this.#read(deferred)
  }

  /**
   * A PUBACK or PUBREC. When a store did not take the message, MQTT 5 clients get the reason
   * code. MQTT 3.1.1 has no way to say it: the connection is closed (the acks before it went out),
   * so the client sends the message again when it reconnects [MQTT-4.4.0-1] rather than waiting
   * for an ack that never comes, its window stuck.
   */
  #sendAck(b0: number, id: number, code: number): void {
    if (this.#state === State.CLOSED) return
    if (code === 0) {
      this.#enqueue(Buffer.from([b0, 0x02, id >> 8, id & 0xff]))
    } else if (this.version === 5) {
      this.#enqueue(Buffer.from([b0, 0x03, id >> 8, id & 0xff, code]))
    } else {
      this.#broker.refusals.warn(`EREFUSED_311:${code}`, { client: this.clientId, packetId: id, reasonCode: code },
        'message not stored: closing the MQTT 3.1.1 connection (it cannot be told in a PUBACK), the client sends it again when it reconnects')
      this.#disconnectWith(code, 'message not stored')
    }
  }

  /**
   * aedes could not keep a message this MQTT 5 client published (the retained store or a session
   * queue refused it: the disk is full): its held PUBACK/PUBREC goes with the reason code.
   */
  refuseAedesPublish(id: number, qos: number, code: number): void {
    let wait = this.#storeWaits?.find((w) => w.id === id && w.qos === qos && w.code === -1) ?? null
    // QoS 2 waits only when a stream captures the topic: aedes' PUBREC comes after this, to be held
    if (wait === null) (this.#storeWaits ??= []).push(wait = new StoreWait(id, qos))
    wait.published = true
    wait.stored = null
    wait.code = code
    if (qos === 2) this.#inInflight-- // a failure PUBREC ends the flow [MQTT-4.3.3-4]
    this.#releaseAedesAcks()
  }

  #topicString(buf: Buffer, start: number, end: number): string | null {
    const last = this.#lastTopicBytes
    if (last.length === end - start && buf.compare(last, 0, last.length, start, end) === 0) return this.#lastTopic
    const bytes = buf.subarray(start, end)
    // [MQTT-1.5.3-1] ill-formed UTF-8 is a protocol error: let aedes close the connection
    if (!isUtf8(bytes)) return null
    const topic = bytes.toString('utf8')
    // [MQTT-4.7.1-1] no wildcards in a topic name; [MQTT-1.5.3-2] no U+0000
    if (topic.includes('+') || topic.includes('#') || topic.includes('\u0000')) return null
    // over limits.maxTopicLength/maxTopicLevels: aedes' path refuses it (authorizePublish)
    if (!this.#broker.topicWithinLimits(topic)) return null
    this.#lastTopicBytes = Buffer.from(bytes)
    this.#lastTopic = topic
    this.#lastTopicAllowed = this.principal.access === ALLOW_ALL || this.principal.access.canPublish(topic)
    return topic
  }

  #packetFor(topic: string, payload: Buffer, qos: 0 | 1, properties: PublishProperties | undefined): RoutedPacket {
    const aedes = this.#broker.aedes
    const packet: RoutedPacket = {
      cmd: 'publish',
      brokerId: aedes.id,
      brokerCounter: ++aedes.counter,
      topic,
      payload: Buffer.from(payload), // listeners may keep it; do not pin the read buffer
      qos,
      retain: false,
      dup: false,
      clientId: this.clientId,
    }
    if (properties !== undefined) {
      packet.properties = properties as Record<string, unknown>
      // as aedes does: the absolute expiry, for messages queued before delivery
      if (properties.messageExpiryInterval !== undefined) packet.messageExpiry = Date.now() + properties.messageExpiryInterval * 1000
    }
    return packet
  }

  // --- stream deliveries (StreamSubscriber) ----------------------------------------------------

  get clientId(): string {
    return this.client?.id ?? this.#plain?.clientId ?? ''
  }

  /** The next id of aedes' own sequence for this client, so the two never hand out the same id. */
  nextPacketId(): number {
    const c = this.client as unknown as { _nextId: number }
    const id = c._nextId
    c._nextId = id >= 65_535 ? 1 : id + 1
    return id
  }

  get outRoom(): number {
    return (this.#peer?.receiveMaximum ?? 65_535) - this.#outInflight
  }

  get outBacklog(): number {
    return this.#outBytes + this.#outHeldBytes + this.transport.bufferedAmount
  }

  get maxOutgoingPacket(): number {
    return this.#maxOutgoingPacket
  }

  sendStreamPublish(frame: Buffer, qos: 0 | 1): void {
    if (qos === 1) this.#outInflight++
    this.messagesOut++
    this.#broker.stats.messagesOut++
    this.#enqueue(frame)
  }

  // --- write side ---------------------------------------------------------------------------

  /** A fast-path QoS 0 frame: dropped (and counted) when the client is over its soft bound. */
  #enqueueQos0(frame: Buffer): void {
    if (this.#admitQos0(frame.length)) this.#enqueue(this.#waiting(frame))
  }

  /** #enqueueQos0 for `buf[start, end)`: extends the pending range when it continues it. */
  #enqueueQos0Range(buf: Buffer, start: number, end: number): void {
    if (!this.#admitQos0(end - start)) return
    if (this.#outAliases !== null) return this.#enqueue(buf.subarray(start, end)) // its topic changes
    this.#outBytes += end - start
    if (this.#rangeSrc === buf && this.#rangeEnd === start) {
      this.#rangeEnd = end
      return // already marked for flushing
    }
    if (this.#rangeSrc !== null) this.#endRange()
    this.#rangeSrc = buf
    this.#rangeStart = start
    this.#rangeEnd = end
    this.#markDirty()
  }

  /**
   * Whether a QoS 0 frame of `size` bytes goes out, counted either way: not over the client's
   * Maximum Packet Size [MQTT-3.1.2-25] nor while it is over its soft queue bound (slow consumer).
   */
  #admitQos0(size: number): boolean {
    if ((this.#maxOutgoingPacket !== 0 && size > this.#maxOutgoingPacket) || this.queuedBytes >= this.#broker.limits.maxQueuedBytes) {
      this.droppedQos0++
      this.#broker.stats.dropped++
      return false
    }
    this.messagesOut++
    this.#broker.stats.messagesOut++
    return true
  }

  writeFromAedes(chunk: Buffer): boolean {
    if (this.#state === State.CLOSED) return true
    ;(this.#fromAedes as PacketAssembler).push(chunk, this.#onAedesPacket as (packet: Buffer) => void)
    const queued = this.queuedBytes
    if (queued >= this.#broker.limits.maxQueuedBytesHard) {
      this.#broker.onSlowConsumer(this, queued)
      return true
    }
    return queued < this.#broker.limits.maxQueuedBytes
  }

  // --- MQTT 5 flow control: what aedes 2.0 beta advertises but does not enforce ---------------

  /** The aedes client's view of the CONNECT (set by aedes before it writes anything). */
  get #peer(): AedesPeer | undefined {
    return (this.link as unknown as { client?: AedesPeer } | null)?.client
  }

  /**
   * Takes the entries we serve ourselves out of a SUBSCRIBE or UNSUBSCRIBE: `$share/...` (shared
   * subscriptions), `$stream/...` and `$replay/...` (stream-subscriptions.ts); returns the packet
   * aedes should still see (null: nothing left for it).
   */
  #interceptReserved(packet: Buffer, type: number): Buffer | null {
    const v5 = this.version === 5
    readVarint(packet, 1, packet.length, vi)
    const bodyStart = 1 + vi.length
    if (bodyStart + 2 > packet.length) return packet // malformed: aedes decides
    const id = packet.readUInt16BE(bodyStart)
    let o = bodyStart + 2
    let si = 0
    if (v5) {
      readVarint(packet, o, packet.length, vi)
      if (vi.length <= 0) return packet
      const at = findPropertyOffset(packet, o + vi.length, o + vi.length + vi.value, Prop.SUBSCRIPTION_IDENTIFIER)
      o += vi.length + vi.value
      if (at !== -1) si = readVarint(packet, at + 1, o, vi).length > 0 ? vi.value : 0
    }
    const headEnd = o
    const kept: Buffer[] = []
    const codes: Array<number | null> = []
    let shared = 0
    while (o + 2 <= packet.length) {
      const start = o
      const len = packet.readUInt16BE(o)
      const topic = packet.toString('utf8', o + 2, o + 2 + len)
      o += 2 + len + (type === PacketType.SUBSCRIBE ? 1 : 0)
      if (o > packet.length) return packet
      if (!topic.startsWith(SHARE_PREFIX)) {
        let parsed
        try {
          parsed = parseStreamFilter(topic)
        } catch (err) {
          this.#broker.log.info({ client: this.clientId, filter: topic, code: 'ESUBJECT_INVALID' }, (err as Error).message)
          shared++
          codes.push(v5 ? 0x8f : 0x80) // Topic Filter invalid
          continue
        }
        if (parsed === null) {
          kept.push(packet.subarray(start, o))
          codes.push(null)
          continue
        }
        shared++
        const streams = this.#broker.streams
        if (type === PacketType.SUBSCRIBE && !this.#mayReadStream(parsed, streams)) {
          codes.push(v5 ? 0x87 : 0x80) // Not authorized
          continue
        }
        if (type === PacketType.SUBSCRIBE) {
          codes.push(streams === null ? 0x80
            : (this.#streamSubs ??= new ConnectionStreams(this, streams, this.#broker.log)).subscribe(topic, parsed, ((packet[o - 1] as number) & 0x03) as 0 | 1 | 2, si))
        } else {
          codes.push(this.#streamSubs?.unsubscribe(topic) === true ? 0x00 : 0x11)
        }
        continue
      }
      shared++
      let parsed: { group: string; filter: string } | null
      try {
        parsed = parseSharedFilter(topic)
      } catch {
        codes.push(v5 ? 0x8f : 0x80) // Topic Filter invalid
        continue
      }
      if (parsed === null) continue
      if (type === PacketType.SUBSCRIBE && !this.#mayRead(parsed.filter)) {
        codes.push(v5 ? 0x87 : 0x80) // Not authorized
        continue
      }
      if (type === PacketType.SUBSCRIBE) {
        const opts = packet[o - 1] as number
        if (v5 && (opts & 0x04) !== 0) {
          // [MQTT-3.8.3-4] No Local on a shared subscription is a Protocol Error
          this.#disconnectWith(0x82, 'No Local on a shared subscription')
          return null
        }
        codes.push(this.#broker.shared.subscribe(this, parsed.group, parsed.filter, (opts & 0x03) as 0 | 1 | 2))
      } else {
        codes.push(this.#broker.shared.unsubscribe(this, parsed.group, parsed.filter) ? 0x00 : 0x11)
      }
    }
    if (shared === 0) return packet
    if (kept.length === 0) {
      this.#enqueue(ackPacket(type === PacketType.SUBSCRIBE ? 0x90 : 0xb0, id, v5, codes as number[]))
      return null
    }
    ;(this.#ackMerges ??= new Map()).set(id, codes)
    const body = Buffer.concat([packet.subarray(bodyStart, headEnd), ...kept])
    return Buffer.concat([Buffer.from([packet[0] as number]), varintBytes(body.length), body])
  }

  /** The ACL allows subscribing to `filter` (counted and logged when not). */
  #mayRead(filter: string): boolean {
    const access = this.principal.access
    if (access === ALLOW_ALL || access.canSubscribe(filter)) return true
    this.#broker.security?.denied(this.principal, 'sub', filter, 'mqtt')
    return false
  }

  /**
   * A stream subscription reads what the consumer (or the replay filter) covers: the client must
   * be allowed to subscribe to all of it, as a subscription to those filters would need. Each
   * delivery is checked again (canReceive) for rules that carve out parts.
   */
  #mayReadStream(parsed: StreamFilter, streams: StreamManager | null): boolean {
    const security = this.#broker.security
    if (security === null || streams === null) return true
    try {
      return security.streamDenial(this.principal, streams, parsed.stream, parsed.kind === 'replay' ? { filter: parsed.filter } : { consumer: parsed.consumer }, 'mqtt') === null
    } catch {
      return true // unknown stream or consumer: the subscription is refused for that reason
    }
  }

  /** Whether this client may receive a message on `topic` (stream deliveries). */
  canReceive(topic: string): boolean {
    const access = this.principal.access
    if (access === ALLOW_ALL || access.canReceive(topic)) return true
    this.#broker.security?.denied(this.principal, 'deliver', topic, 'mqtt')
    return false
  }

  /**
   * A client that logged in with an access token is disconnected when the token expires (MQTT 5:
   * reason 0xA0 Maximum connect time); it reconnects with a fresh one.
   */
  expireAt(at: number): void {
    const t = setTimeout(() => {
      if (this.#state === State.CLOSED) return
      this.#broker.log.info({ client: this.clientId, user: this.principal.identity.user }, 'access token expired: disconnecting')
      this.#disconnectWith(0xa0, 'access token expired')
    }, Math.max(0, Math.min(at - Date.now(), 2 ** 31 - 1)))
    t.unref()
    this.#expiry = t
  }

  /** aedes' SUBACK/UNSUBACK for a packet we split: our shared reason codes go back in their places. */
  #mergeAck(packet: Buffer, type: number): Buffer {
    const id = packet.readUInt16BE(1 + (readVarint(packet, 1, packet.length, vi), vi.length))
    const codes = this.#ackMerges?.get(id)
    if (codes === undefined) return packet
    this.#ackMerges?.delete(id)
    const v5 = this.version === 5
    if (type === PacketType.UNSUBACK && !v5) return packet // 3.1.1 UNSUBACK has no reason codes
    let o = 1 + vi.length + 2
    if (v5) {
      readVarint(packet, o, packet.length, vi)
      o += vi.length + vi.value
    }
    let k = o
    const merged = codes.map((c) => (c === null ? (packet[k++] as number) : c))
    return ackPacket(type === PacketType.SUBACK ? 0x90 : 0xb0, id, v5, merged)
  }

  /** One whole packet aedes wrote for the client. */
  #sendAedesPacket(packet: Buffer): void {
    const b0 = packet[0] as number
    const type = b0 >> 4
    const peer = this.#peer
    if (type === PacketType.SUBACK || type === PacketType.UNSUBACK) {
      if (this.#ackMerges !== null) packet = this.#mergeAck(packet, type)
      if (this.#subscribing > 0) {
        this.#subscribing--
        queueMicrotask(() => this.#readDeferred()) // after this SUBACK is queued
      }
    }
    if (type === PacketType.CONNACK && this.promoting) {
      // the replayed CONNECT of a client that has our CONNACK already (see #promote)
      this.promoting = false
      readVarint(packet, 1, packet.length, vi)
      if (packet[1 + vi.length + 1] === 0) return
      this.#broker.log.warn({ conn: this.id, client: this.clientId, reasonCode: packet[1 + vi.length + 1] }, 'closing connection: aedes refused the session of a connected client')
      this.destroy()
      return
    }
    // aedes announces shared subscriptions as unavailable; we serve them, so the property goes
    if (type === PacketType.CONNACK && peer !== undefined) {
      packet = this.#broker.sessions.connack(packet, peer)
      if (peer.version === 5) packet = withoutSharedUnavailable(packet)
    }
    const maxSize = peer?.maximumPacketSize ?? 0
    if (type === PacketType.PUBLISH) {
      if (this.#broker.userPropertyMarkers && this.version === 5 && mayCarryMarker(packet)) packet = restoreUserPropertyOrder(packet)
      const qos = (b0 >> 1) & 3
      if (maxSize > 0 && packet.length > maxSize) {
        this.#discardOversized(packet, qos)
        return
      }
      this.messagesOut++
      this.#broker.stats.messagesOut++
      if (qos > 0) {
        if (this.#outInflight >= (peer?.receiveMaximum ?? 65_535)) {
          this.#outHeld.push(packet)
          this.#outHeldBytes += packet.length
          return
        }
        this.#outInflight++
      }
    } else if (type === PacketType.PUBACK || type === PacketType.PUBCOMP) {
      this.#inInflight--
      if (type === PacketType.PUBACK && (this.#storeWaits !== null || this.#aedesAcks !== null)) {
        this.#holdAedesAck(packet, 1)
        return
      }
    } else if (type === PacketType.PUBREC) {
      // a PUBREC with a failure reason code ends the QoS 2 flow [MQTT-4.3.3-4]
      if (packet.length > 4 && (packet[4] as number) >= 0x80) this.#inInflight--
      if (this.#storeWaits !== null || this.#aedesAcks !== null) {
        this.#holdAedesAck(packet, 2)
        return
      }
    } else if (type === PacketType.PUBREL && this.#discardedQos2 !== null) {
      const id = packet.readUInt16BE(2)
      if (this.#discardedQos2.delete(id)) {
        this.#toAedes(Buffer.from([0x70, 0x02, id >> 8, id & 0xff])) // PUBCOMP on the client's behalf
        return
      }
    }
    this.#enqueue(packet)
  }

  /**
   * [MQTT-3.1.2-25] A packet over the client's Maximum Packet Size is discarded as if it had been
   * sent: QoS 1/2 flows are completed towards aedes so its session state stays consistent.
   */
  #discardOversized(packet: Buffer, qos: number): void {
    this.droppedQos0 += qos === 0 ? 1 : 0
    this.#broker.stats.dropped++
    if (qos === 0) return
    readVarint(packet, 1, packet.length, vi)
    const topicAt = 1 + vi.length
    const id = packet.readUInt16BE(topicAt + 2 + packet.readUInt16BE(topicAt))
    if (qos === 1) {
      this.#toAedes(Buffer.from([0x40, 0x02, id >> 8, id & 0xff])) // PUBACK
    } else {
      ;(this.#discardedQos2 ??= new Set()).add(id)
      this.#toAedes(Buffer.from([0x50, 0x02, id >> 8, id & 0xff])) // PUBREC
    }
  }

  // --- stream acks on aedes' path -------------------------------------------------------------
  // aedes answers a QoS 1 PUBLISH before it routes it (and a QoS 2 one before PUBREL). For a
  // message a stream captures, that PUBACK/PUBREC waits here until the stream holds the message.

  /** A QoS 1/2 PUBLISH goes to aedes: if a stream captures its topic, its ack must wait for the store. */
  #noteAedesPublish(buf: Buffer, o: number, headerLen: number, qos: number): void {
    let p = o + headerLen
    const end = o + 1 + (headerLen - 1) + (readVarint(buf, o + 1, buf.length, vi), vi.value)
    if (p + 2 > end) return
    const topicLen = buf.readUInt16BE(p)
    let topic = buf.toString('utf8', p + 2, p + 2 + topicLen)
    p += 2 + topicLen
    if (p + 2 > end) return
    const id = buf.readUInt16BE(p)
    p += 2
    if (this.version === 5) {
      // mirror aedes' topic alias map, only to know the topic [MQTT-3.3.2-12]
      readVarint(buf, p, end, vi)
      if (vi.length > 0) {
        const propsEnd = p + vi.length + vi.value
        const entries = userPropertyOrder(buf, p + vi.length, propsEnd)
        if (entries !== null) (this.#userPropertyOrders ??= []).push({ id, entries })
        const at = findPropertyOffset(buf, p + vi.length, propsEnd, Prop.TOPIC_ALIAS)
        if (at !== -1 && at + 3 <= end) {
          const alias = buf.readUInt16BE(at + 1)
          if (topicLen > 0) (this.#aliases ??= new Map()).set(alias, topic)
          else topic = this.#aliases?.get(alias) ?? ''
        }
      }
    }
    if (qos === 2 && (topic === '' || this.#broker.router.match(topic).stores === 0)) return
    ;(this.#storeWaits ??= []).push(new StoreWait(id, qos))
  }

  /** The user properties of the QoS 1/2 PUBLISH `id` as they came, when aedes would reorder them (see user-property-order.ts). */
  takeUserPropertyOrder(id: number): Buffer | null {
    const queue = this.#userPropertyOrders
    if (queue === null) return null
    const i = queue.findIndex((e) => e.id === id)
    if (i === -1) return null
    const { entries } = queue[i] as { entries: Buffer }
    queue.splice(0, i + 1) // any ahead of it aedes never authorized (refused before)
    if (queue.length === 0) this.#userPropertyOrders = null
    return entries
  }

  /**
   * aedes dropped a QoS 1 PUBLISH the ACL denied (MQTT 3.1.1, which cannot be told): the client
   * still gets its PUBACK, in order, as if aedes had written it.
   */
  ackDropped(id: number): void {
    const wait = this.#storeWaits?.find((w) => w.id === id && w.qos === 1 && w.stored === null)
    if (wait !== undefined) {
      wait.stored = Promise.resolve() // no stream will store it
      wait.code = 0
    }
    this.#sendAedesPacket(Buffer.from([0x40, 0x02, id >> 8, id & 0xff]))
  }

  /** The router stored a message this client published through aedes (in publish order). */
  noteStored(qos: number, stored: Promise<unknown>): void {
    // QoS 1: the message aedes is publishing now is the oldest not yet published (one stream or more)
    const wait = this.#storeWaits?.find((w) => w.qos === qos && (qos === 1 ? !w.published : w.stored === null))
    if (wait === undefined) {
      stored.catch(noop) // QoS 0, or a message we did not see coming: nothing to hold
      return
    }
    const all = wait.stored === null ? stored : Promise.all([wait.stored, stored])
    wait.stored = all
    all.then(() => { if (wait.stored === all) wait.code = 0 }, (err: unknown) => { if (wait.stored === all) wait.code = refusalCode(err) })
      .then(() => this.#releaseAedesAcks())
  }

  /** aedes has published the QoS 1 PUBLISH `id` of this client: its PUBACK may go once its streams hold it. */
  notePublished(id: number): void {
    const wait = this.#storeWaits?.find((w) => w.id === id && w.qos === 1 && !w.published)
    if (wait === undefined) return
    wait.published = true
    if (wait.stored !== null) return // the streams' answer releases it
    wait.code = 0
    this.#releaseAedesAcks()
  }

  #holdAedesAck(packet: Buffer, qos: number): void {
    const id = packet.readUInt16BE(2)
    const wait = this.#storeWaits?.find((w) => w.id === id && w.qos === qos && w.ack === null) ?? null
    if (wait !== null) {
      wait.ack = packet
      // aedes refused the message itself (not authorized): no store will come
      if (packet.length > 4 && (packet[4] as number) >= 0x80) wait.code = packet[4] as number
    }
    ;(this.#aedesAcks ??= []).push(wait ?? packet)
    this.#releaseAedesAcks()
  }

  #releaseAedesAcks(): void {
    const queue = this.#aedesAcks
    if (queue === null) return
    while (queue.length > 0) {
      const head = queue[0] as Buffer | StoreWait
      if (head instanceof StoreWait) {
        if (head.code === -1 || head.ack === null) break
        const ack = head.ack
        if (head.code === 0 || (ack.length > 4 && (ack[4] as number) === head.code)) this.#enqueue(ack)
        else this.#sendAck((ack[0] as number) & 0xf0, head.id, head.code)
        this.#storeWaits?.splice(this.#storeWaits.indexOf(head), 1)
        if (this.#storeWaits?.length === 0) this.#storeWaits = null
      } else {
        this.#enqueue(head)
      }
      queue.shift()
    }
    if (queue.length === 0) this.#aedesAcks = null
  }

  /**
   * Accounting for a QoS flow packet from the client. Returns false when the client broke the
   * server's Receive Maximum and was disconnected.
   */
  #flowFromClient(buf: Buffer, o: number, type: number, b0: number, headerLen: number): boolean {
    if (type === PacketType.PUBLISH) {
      const qos = (b0 >> 1) & 3
      if (qos === 0) return true
      this.#inInflight++
      this.#noteAedesPublish(buf, o, headerLen, qos)
      // MQTT 5 clients know the limit from CONNACK [MQTT-3.3.4-9]; 3.1.1 clients are held to it
      // for QoS 2 only, whose half-open flows would otherwise grow the session store without bound
      if (this.#inInflight > this.#broker.limits.receiveMaximum && (this.version === 5 || qos === 2)) {
        this.#broker.log.warn({ conn: this.id, client: this.clientId, inflight: this.#inInflight, code: 'ERECEIVE_MAXIMUM' }, 'closing connection: Receive Maximum exceeded')
        this.#disconnectWith(0x93, 'Receive Maximum exceeded')
        return false
      }
    } else if (type === PacketType.PUBACK || type === PacketType.PUBCOMP ||
      (type === PacketType.PUBREC && (buf[o + 1] as number) >= 3 && (buf[o + headerLen + 2] as number) >= 0x80)) {
      // the client finished one of our QoS 1/2 deliveries: let a held one go
      if (this.#outInflight > 0) this.#outInflight--
      const next = this.#outHeld.shift()
      if (next !== undefined) {
        this.#outHeldBytes -= next.length
        this.#outInflight++
        this.#enqueue(next)
      }
    }
    return true
  }

  #enqueue(frame: Buffer): void {
    if (this.#rangeSrc !== null) this.#endRange() // keep the order
    if (this.#outAliases !== null && (frame[0] as number) >> 4 === PacketType.PUBLISH) frame = this.#outAliases.apply(frame, this.#maxOutgoingPacket)
    this.#out.push(frame)
    this.#outBytes += frame.length
    this.#markDirty()
  }

  #markDirty(): void {
    if (!this.#marked && !this.#waitingDrain) {
      this.#marked = true
      this.#broker.flusher.mark(this)
    }
  }

  #endRange(): void {
    this.#out.push(this.#waiting((this.#rangeSrc as Buffer).subarray(this.#rangeStart, this.#rangeEnd)))
    this.#rangeSrc = null
  }

  /**
   * A slice of a publisher's read buffer that is to wait for this client's socket to drain: held
   * as a copy. As a slice it would pin the whole read buffer (up to 64 KB) for its own few bytes,
   * and only those count against limits.maxQueuedBytes: a stalled subscriber to one topic of many
   * held 65 MB for good under a 4 MB bound (issue 15; test/mqtt/slow-consumer.test.ts).
   */
  #waiting(frame: Buffer, waits = this.#waitingDrain): Buffer {
    return waits && frame.buffer.byteLength > 8192 && frame.length * 2 < frame.buffer.byteLength ? Buffer.from(frame) : frame
  }

  flush(): void {
    this.#marked = false
    if (this.#outBytes === 0 || this.#waitingDrain || this.#state === State.CLOSED) return
    if (this.#rangeSrc !== null) this.#endRange()
    const out = this.#out
    // a socket that holds bytes already queues these too: a lone slice waits there as a copy
    const data = out.length === 1 ? this.#waiting(out[0] as Buffer, this.transport.bufferedAmount > 0) : Buffer.concat(out, this.#outBytes)
    this.#out = []
    this.#outBytes = 0
    this.#broker.stats.bytesOut += data.length
    if (!this.transport.write(data)) this.#waitingDrain = true
    else {
      this.link?.release()
      this.#streamSubs?.pump() // stream deliveries wait for the backlog to go
    }
  }

  onDrain(): void {
    if (!this.#waitingDrain) return
    this.#waitingDrain = false
    if (this.#outBytes > 0) {
      this.flush()
      return
    }
    // nothing queued meanwhile (the producers wait for this drain): wake them, or they never resume
    this.link?.release()
    this.#streamSubs?.pump()
  }

  /** Writes what is queued right now (before closing). */
  #flushNow(): void {
    this.#waitingDrain = false
    this.flush()
  }

  // --- closing ------------------------------------------------------------------------------

  closeFromAedes(): void {
    if (this.#state === State.CLOSED) return
    this.#flushNow()
    this.#state = State.CLOSED
    this.transport.end()
    // a peer that never reads must not keep the socket open
    setTimeout(() => this.transport.destroy(), 2000).unref()
  }

  onClose(): void {
    if (this.#state !== State.CLOSED) this.#state = State.CLOSED
    this.#out = []
    this.#outBytes = 0
    this.#rangeSrc = null
    this.#held = []
    // aedes may keep the client (and so this connection) until its session expires: let go of input
    this.#partial = null
    this.#deferred = null
    this.#throttled = null
    this.#outHeld = []
    this.#outHeldBytes = 0
    if (this.#throttleTimer !== null) clearTimeout(this.#throttleTimer)
    if (this.#expiry !== null) clearTimeout(this.#expiry)
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#streamSubs?.close()
    this.#streamSubs = null
    this.#early?.close()
    this.#early = null
    this.#plainSubs?.close()
    this.#plainSubs = null
    if (this.link !== null && !this.link.destroyed) {
      this.link.letGo()
      this.link.destroy()
    }
    this.#broker.onConnectionClosed(this)
  }

  /** Closes the transport at once (slow consumer, protocol error). */
  destroy(): void {
    this.#state = State.CLOSED
    this.transport.destroy()
  }

  /**
   * A packet that breaks the protocol in a way aedes would not catch (packet-check.ts): the
   * client is told (MQTT 5: CONNACK or DISCONNECT with the reason code) and the connection closed.
   */
  #badPacket(problem: PacketProblem, connectLevel = 0): void {
    this.#broker.warnings.warn('EPACKET_MALFORMED', { conn: this.id, client: this.clientId, remote: this.transport.remoteAddress, code: 'EPACKET_MALFORMED', reasonCode: problem.code }, `closing connection: ${problem.why}`)
    if (connectLevel === 5) {
      this.#enqueue(Buffer.from([0x20, 0x03, 0x00, problem.code, 0x00])) // CONNACK with the reason
      this.closeFromAedes()
      if (this.link !== null && !this.link.destroyed) this.link.destroy()
      return
    }
    if (connectLevel !== 0) this.#state = State.CLOSED // MQTT 3.1.1: close without CONNACK
    this.#disconnectWith(problem.code, problem.why)
  }

  #packetTooLarge(size: number): void {
    this.#broker.log.warn({ conn: this.id, client: this.clientId, remote: this.transport.remoteAddress, code: 'EPACKET_TOO_LARGE', size, max: this.#broker.limits.maxPacketSize }, 'closing connection: packet too large')
    this.#disconnectWith(0x95, 'packet too large')
  }

  /** MQTT 5 clients are told why with a DISCONNECT reason code; older clients are just closed [MQTT-4.13.1-1]. */
  #disconnectWith(reasonCode: number, _why: string): void {
    if (this.#state === State.CONNECTED && this.version === 5) {
      this.#enqueue(Buffer.from([0xe0, 0x01, reasonCode]))
      this.closeFromAedes()
    } else {
      this.#state = State.CLOSED
      this.transport.end()
      setTimeout(() => this.transport.destroy(), 2000).unref()
    }
    if (this.link !== null && !this.link.destroyed) this.link.destroy()
  }
}

function varintBytes(n: number): Buffer {
  const buf = Buffer.allocUnsafe(4)
  return buf.subarray(0, writeVarint(buf, 0, n))
}

/** A SUBACK (0x90) or UNSUBACK (0xB0) with reason codes (and an empty property block for MQTT 5). */
function ackPacket(b0: number, id: number, v5: boolean, codes: number[]): Buffer {
  const body = Buffer.from([id >> 8, id & 0xff, ...(v5 ? [0] : []), ...(b0 === 0xb0 && !v5 ? [] : codes)])
  return Buffer.concat([Buffer.from([b0]), varintBytes(body.length), body])
}

/** A CONNACK without the Shared Subscription Available property (absent means available). */
function withoutSharedUnavailable(packet: Buffer): Buffer {
  readVarint(packet, 1, packet.length, vi)
  const propsAt = 1 + vi.length + 2
  readVarint(packet, propsAt, packet.length, vi)
  const propsStart = propsAt + vi.length
  const propsEnd = propsStart + vi.value
  const at = findPropertyOffset(packet, propsStart, propsEnd, 0x2a)
  if (at === -1) return packet
  const props = Buffer.concat([packet.subarray(propsStart, at), packet.subarray(at + 2, propsEnd)])
  const body = Buffer.concat([packet.subarray(1 + (readVarint(packet, 1, packet.length, vi), vi.length), propsAt), varintBytes(props.length), props])
  return Buffer.concat([Buffer.from([packet[0] as number]), varintBytes(body.length), body])
}
