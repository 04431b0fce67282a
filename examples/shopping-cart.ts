// Dynamo's shopping cart: two clients add items from the same stale read, the store keeps both
// versions as siblings, and a union merge resolves them and writes the result back.
//
//   npm start                                  # a local 3-node cluster
//   npx tsx examples/shopping-cart.ts          # in another terminal
//
// ZEROHOP_SEEDS overrides the node to connect to (default http://127.0.0.1:7001).
import { connect } from '@zerohop/client'

type Cart = { items: string[] }

const seeds = (process.env.ZEROHOP_SEEDS ?? 'http://127.0.0.1:7001').split(',')
const key = `cart:${process.env.CART_ID ?? Date.now()}`

const db = await connect({ seeds })
let merges = 0
// Adding is never lost: the union of every sibling's items.
const carts = db.collection<Cart>({
  encoding: 'json',
  merge: (siblings) => {
    merges++
    return { items: [...new Set(siblings.flatMap((c) => c.items))].sort() }
  },
})

try {
  await carts.put(key, { items: ['book'] })
  const stale = await carts.get(key)
  console.log('start:', stale.value)

  // Two clients (two browser tabs, say) add from the same read: neither sees the other's write.
  await carts.put(key, { items: ['book', 'pen'] }, { context: stale.context })
  await carts.put(key, { items: ['book', 'mug'] }, { context: stale.context })

  // A view without a merge function shows the conflict as it is stored.
  const raw = await db.collection<Cart>({ encoding: 'json' }).get(key)
  console.log('siblings:', raw.siblings)
  if (raw.siblings.length !== 2) throw new Error(`expected 2 siblings, got ${raw.siblings.length}`)

  // The merge resolves them once and writes the union back with the joined context.
  const merged = await carts.get(key)
  console.log('merged:', merged.value)
  const again = await carts.get(key)
  console.log('next read:', again.value, `(merge called ${merges} time)`)
  if (JSON.stringify(again.value) !== JSON.stringify({ items: ['book', 'mug', 'pen'] }) || merges !== 1 || again.siblings.length !== 1) {
    throw new Error('the merged cart was not written back')
  }
} finally {
  await db.close()
}
