// Anti-entropy endpoints: the roots of many partitions, a level of one partition's Merkle tree, the
// keys under some leaves. AntiEntropy validates the bodies; here every partition must be one this
// node replicates, so an asker never compares a partition the two do not share.
import { AntiEntropyPaths } from '../anti-entropy.js'
import type { Handler } from './replica.js'

export const antiEntropyHandlers: Record<string, Handler> = {
  [AntiEntropyPaths.roots]: async (body, v, _replica, { antiEntropy }) => {
    // The handler validates the body (and reads nothing) before the partitions are checked.
    const answer = antiEntropy.handleRoots(body)
    for (const p of body.partitions as number[]) v.replicated(v.partition(p, 'request'), 'request')
    return answer
  },
  [AntiEntropyPaths.tree]: async (body, v, _replica, { antiEntropy }) => {
    if (typeof body.partition === 'number') v.replicated(body.partition, 'request')
    return antiEntropy.handleTree(body)
  },
  [AntiEntropyPaths.keys]: async (body, v, _replica, { antiEntropy }) => {
    if (typeof body.partition === 'number') v.replicated(body.partition, 'request')
    return antiEntropy.handleKeys(body)
  },
}
