/**
 * The error registry: every error edgebus reports to a user carries one of these stable codes,
 * so logs, CLI output and API answers can be searched and tests can assert on them.
 * docs/errors.md lists them; keep the two in step.
 */
export const ErrorCodes = {
  ESUBJECT_INVALID: 'a subject, MQTT topic or filter is malformed',
  ESUBJECT_WILDCARD: 'a wildcard was used where only a concrete subject is allowed',
  ECONFIG_INVALID: 'a configuration value has the wrong type or range',
  ECONFIG_UNKNOWN_KEY: 'a configuration key is not known',
  ECONFIG_FILE: 'the configuration file cannot be read or parsed',
  EADDRINUSE: 'a listener port is already taken',
  ELISTEN: 'a listener could not be opened',
  EUSAGE: 'a command line is malformed',
  ECONNECT: 'the CLI could not connect to the server',
  EPACKET_MALFORMED: 'a client sent a malformed MQTT packet',
  EPACKET_TOO_LARGE: 'a client sent a packet over the maximum packet size',
  ERECEIVE_MAXIMUM: 'a client had more QoS 1/2 messages unacknowledged than the Receive Maximum allows',
  ESLOW_CONSUMER: 'a client stopped reading and its queue passed the hard bound',
  ENATS_PROTOCOL: 'a NATS client sent input the NATS client protocol does not allow (answered with -ERR)',
  EJOURNAL_CORRUPT: 'a stream journal record or file failed its integrity check',
  EJOURNAL_IO: 'a stream journal file could not be read, written or synced',
  EJOURNAL_FULL: 'the disk holding a stream journal is full',
  EJOURNAL_CLOSED: 'a stream journal was used after it was closed',
  ERECORD_INVALID: 'a stream record is malformed or over a field size limit',
  ESTREAM_LIMIT: 'a stream limit refused the message (discard new)',
  ESTORE_FULL: 'the replicated stream store (JetStream) has no room left for the message',
  ESTORE_UNAVAILABLE: 'the replicated stream store (JetStream) refused or did not answer in time',
  EJOURNAL_LOCKED: 'a stream journal directory is already open (in this or another process)',
  // issue 5: the MQTT state store (src/persistence)
  EPERSIST_IO: 'the MQTT state file (retained messages, sessions) could not be read, written or synced',
  EPERSIST_FULL: 'the disk holding the MQTT state (retained messages, sessions) is full: changes are refused until there is space',
  EPERSIST_CORRUPT: 'a record of the MQTT state file failed its integrity check and was skipped',
  EPERSIST_LOCKED: 'another edgebus process uses the same data directory',
  ESTREAM_INVALID: 'a stream definition is malformed',
  ESTREAM_OVERLAP: 'two streams would capture the same subject',
  ESTREAM_NOT_FOUND: 'no stream has that name',
  ESTREAM_EXISTS: 'a stream with that name exists already',
  ESTREAM_CONFIGURED: 'a stream declared in the config file cannot be changed at run time',
  EHTTP_BODY: 'an HTTP request body is too large or not valid JSON',
  EHTTP_METHOD: 'the HTTP method is not allowed on that path',
  // issue 20: operators' papercuts
  EHTTP_QUERY: 'an HTTP request has a query parameter the endpoint does not know (the answer lists the known ones)',
  EUSER_INVALID: 'a run-time user name or password is not valid',
  EUSER_NOT_FOUND: 'no run-time user or ACL entry has that name',
  EUSER_EXISTS: 'a user of that name exists already (add it with a new name, or change its password)',
  EUSER_CONFIGURED: 'a user of the password file named in the config is changed there (edgebus passwd), not at run time',
  EUSER_AUTH_OFF: 'users and ACLs cannot be changed at run time on a server without an auth section',
  ECONNECTION_NOT_FOUND: 'no client connection has that id (GET /api/connections lists them)',
  EREFUSED: 'the server the CLI reached refused the request (an MQTT reason code or a server error code says why)',
  // issue 4: stream consumers (src/stream/consumer*.ts)
  ECONSUMER_INVALID: 'a consumer definition is malformed',
  ECONSUMER_IN_USE: 'a durable consumer is already open in this process',
  ECONSUMER_IO: 'a consumer state file could not be read, written or synced',
  ECONSUMER_CORRUPT: 'a consumer state file failed its integrity check (the damaged part is skipped or set aside)',
  ECONSUMER_CLOSED: 'a consumer was used after it was closed',
  ECONSUMER_NOT_FOUND: 'a stream has no consumer of that name',
  ECONSUMER_CONFIGURED: 'a consumer declared with its stream cannot be removed at run time',
  EWS_FRAME: 'a /ws frame was binary; the JSON protocol uses text frames',
  EWS_JSON: 'a /ws frame is not one JSON object',
  EWS_OP: 'a /ws frame has an unknown op',
  EWS_FIELD: 'a /ws frame has a missing or invalid field',
  EWS_NO_SUB: 'a /ws unsub names no subscription of the connection',
  EWS_LIMIT: 'a /ws connection reached its subscription limit',
  // issue 8: security and limits (src/auth, src/mqtt, src/http)
  EAUTH_BAD_CREDENTIALS: 'a client gave an unknown user name or a wrong password',
  EAUTH_ANONYMOUS: 'a client gave no credentials and anonymous access is off (users exist; set auth.allowAnonymous to allow it)',
  EAUTH_TOKEN_INVALID: 'an access token is malformed or its signature does not verify',
  EAUTH_TOKEN_EXPIRED: 'an access token is past its expiry',
  EAUTH_PASSWD_FILE: 'the password file cannot be read, parsed or written',
  EAUTH_CERT: 'a client certificate was missing, not trusted or carries no usable common name',
  EACL_INVALID: 'an ACL rule in the configuration is malformed',
  EACL_DENIED: 'an ACL rule denied a publish, subscribe or delivery',
  ETLS_CONFIG: 'a TLS certificate, key or CA file cannot be read or does not match',
  ELIMIT_CONNECTIONS: 'the server or one source address reached its connection limit',
  ELIMIT_CONNECT_RATE: 'one source address opened connections faster than limits.connectRate allows',
  ELIMIT_FILES: 'the process is at its open-file limit (ulimit -n): new connections are refused; limits.maxConnections above that limit is warned at start',
  ELIMIT_SUBSCRIPTIONS: 'a client reached limits.maxSubscriptions',
  ELIMIT_TOPIC: 'a topic is longer or has more levels than limits.maxTopicLength / limits.maxTopicLevels allow',
  // issue 14: store-and-forward bridges (src/bridge)
  EBRIDGE_INVALID: 'a bridge definition in the config file is malformed',
  EBRIDGE_NOT_FOUND: 'no bridge has that name',
  // issue 17: several nodes as one broker over NATS (src/cluster)
  ECLUSTER_LINK: 'the connection to the NATS cluster failed or is down (messages to other nodes are not sent until it is back)',
  ECLUSTER_NOT_FOUND: 'GET /api/cluster on a node that is not in a cluster (cluster.urls is empty)',
  ECLUSTER_RETAINED: 'a retained message could not be stored in the cluster\'s replicated bucket (JetStream refused it or did not answer)',
} as const

export type ErrorCode = keyof typeof ErrorCodes

export class EdgebusError extends Error {
  readonly code: ErrorCode
  /** Extra, machine-readable facts (the config key, the offending value, ...). */
  readonly detail: Readonly<Record<string, unknown>>

  constructor(code: ErrorCode, message: string, detail: Record<string, unknown> = {}) {
    super(message)
    this.name = 'EdgebusError'
    this.code = code
    this.detail = detail
  }

  override toString(): string {
    return `${this.code}: ${this.message}`
  }
}

export function isEdgebusError(err: unknown, code?: ErrorCode): err is EdgebusError {
  return err instanceof EdgebusError && (code === undefined || err.code === code)
}
