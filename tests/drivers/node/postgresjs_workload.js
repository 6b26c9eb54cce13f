// The driver workload through postgres.js (npm package `postgres`; tests/drivers/README.md).
//
// --path unprepared  prepare: false: the unnamed statement for every query
// --path prepared    prepare: true (its default): named prepared statements, reused by text
//
// One connection (max: 1), as read-your-writes is per client connection. postgres.js pipelines the
// queries it is given together: the batch is three INSERTs returned together from sql.begin, and the
// read-then-write is two queries awaited together (each with its own Sync: postgres.js has no
// way to put two queries before one Sync).
'use strict'

const postgres = require('postgres')
const { args, emit, step, fail, STEP_TIMEOUT_MS, LOG_ROWS } = require('./common')

async function main() {
  const a = args(['unprepared', 'prepared'])
  const sql = postgres({
    host: a.host, port: a.port, user: a.user, pass: a.password, database: a.dbname, ssl: false,
    max: 1, prepare: a.path === 'prepared', connect_timeout: STEP_TIMEOUT_MS / 1000, idle_timeout: 0,
    onnotice: () => {},
  })

  const qty = (id) => sql`SELECT qty FROM drv_items WHERE id = ${id}`.values()

  emit('plain', await step('plain', () => sql`SELECT /*drv-plain*/ id, name, qty FROM drv_items ORDER BY id`.values()))
  emit('plain_again', await step('plain_again', () => sql`SELECT /*drv-plain*/ id, name, qty FROM drv_items ORDER BY id`.values()))
  for (const name of ['ref', 'ref_2', 'ref_3']) {
    emit(name, await step(name, () => sql`SELECT code, label FROM drv_ref WHERE code = ${2}`.values()))
  }
  emit('param', await step('param', () => sql`SELECT name, qty FROM drv_items WHERE id = ${3}`.values()))
  emit('range', await step('range', () => sql`SELECT id FROM drv_items WHERE qty > ${25} ORDER BY id`.values()))
  emit('fetchval', await step('fetchval', () => sql`SELECT ${41}::int + 1`.values()))

  const [read, write] = await step('pipe', () => Promise.all([
    sql`SELECT qty FROM drv_items WHERE id = ${4}`.values(),
    sql`UPDATE drv_items SET qty = qty + ${100} WHERE id = ${4} RETURNING qty`.values(),
  ]))
  emit('pipe_read', read)
  emit('pipe_write', write)
  emit('pipe_after', await step('pipe', () => qty(4)))

  await step('ryw', () => sql`INSERT INTO drv_items (id, name, qty) VALUES (${101}, ${'new'}, ${7})`)
  emit('ryw', await step('ryw', () => sql`SELECT name, qty FROM drv_items WHERE id = ${101}`.values()))

  emit('stale_before', await step('stale', () => qty(2)))
  emit('stale_before_2', await step('stale', () => qty(2)))
  await step('stale', () => sql`UPDATE drv_items SET qty = qty + ${1} WHERE id = ${2}`)
  emit('stale_after', await step('stale', () => qty(2)))

  const inside = await step('tx', () => sql.begin(async (tx) => {
    await tx`UPDATE drv_items SET qty = qty + ${5} WHERE id = ${1}`
    return tx`SELECT qty FROM drv_items WHERE id = ${1}`.values()
  }))
  emit('tx_inside', inside)
  emit('tx_after', await step('tx', () => qty(1)))

  await step('batch', () => sql.begin((tx) => LOG_ROWS.map(([id, note]) =>
    tx`INSERT INTO drv_log (id, note) VALUES (${id}, ${note})`)))
  emit('batch_after', await step('batch', () => sql`SELECT id, note FROM drv_log ORDER BY id`.values()))

  emit('final', await step('final', () => sql`SELECT /*drv-plain*/ id, name, qty FROM drv_items ORDER BY id`.values()))
  await step('close', () => sql.end({ timeout: STEP_TIMEOUT_MS / 1000 }))
}

main().catch((err) => fail('main', err))
