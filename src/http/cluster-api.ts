import type { HttpFront } from './server.ts'
import { sendJson } from './server.ts'
import type { HttpAuth } from './http-auth.ts'
import { EdgebusError } from '../core/errors.ts'

/** What the HTTP layer reads of the cluster (src/cluster/cluster.ts), without loading the NATS client. */
export interface ClusterView {
  status(): {
    node: string
    link: { state: string; reconnects: number }
    nodes: Array<{ id: string }>
    messages: { sent: number; received: number; dropped: number }
    takeovers: number
    willsPublished: number
    retained: { failed: number } | null
  }
}

/** GET /api/cluster: this node, the nodes it hears, their clients and the NATS link; 404 without a cluster. */
export function mountClusterApi(http: HttpFront, cluster: ClusterView | null, auth: HttpAuth): void {
  http.route('GET', '/api/cluster', async (req, res, url) => {
    auth.mayReadInternals(await auth.principal(req, url))
    if (cluster === null) throw new EdgebusError('ECLUSTER_NOT_FOUND', 'this node is not in a cluster: set cluster.urls (docs/cluster.md)')
    sendJson(res, 200, cluster.status())
  })
}
