// The real ReplicaClient over an in-memory transport made of one function that answers POSTs: how
// tests put handlers (or failures) behind the components that talk to peers.
import { ReplicaClient, type SendOptions } from '@zerohop/client'

export type Post = (url: string, path: string, body: Uint8Array, options?: SendOptions) => Promise<{ status: number; body: Buffer }>

export function replicaClientOf(post: Post): ReplicaClient {
  return new ReplicaClient({
    post,
    get: async () => {
      throw new Error('GET is not used here')
    },
    close: async () => {},
  })
}
