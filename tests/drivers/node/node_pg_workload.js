// The driver workload through node-postgres (Debian's node-pg; tests/drivers/README.md).
//
// --path unnamed  client.query(text) without values: a Query message; with values: the unnamed
//                 statement (Parse/Bind/Describe/Execute/Sync)
// --path named    client.query({ name, text, values }): named prepared statements, every statement
//
// node-postgres sends one query at a time (it waits for ReadyForQuery before the next one): it has no
// pipeline or batch API, so the batch is three INSERTs one after another and there are no pipe_* steps.
'use strict'

const pg = require('pg')
const { args, emit, step, fail, STEP_TIMEOUT_MS, LOG_ROWS, SQL } = require('./common')

async function main() {
  const a = args(['unnamed', 'named'])
  const client = new pg.Client({
    host: a.host, port: a.port, user: a.user, password: a.password, database: a.dbname, ssl: false,
    connectionTimeoutMillis: STEP_TIMEOUT_MS, query_timeout: STEP_TIMEOUT_MS,
  })
  client.on('error', (err) => fail('connection', err))
  await step('connect', () => client.connect())

  // The name of a statement is derived from its text, as an application would name it once.
  const names = new Map()
  const query = (text, values) => {
    if (a.path === 'named') {
      if (!names.has(text)) names.set(text, `drv_${names.size + 1}`)
      return client.query({ name: names.get(text), text, values: values || [], rowMode: 'array' })
    }
    return client.query(values ? { text, values, rowMode: 'array' } : { text, rowMode: 'array' })
  }
  const rows = async (label, text, values) => (await step(label, () => query(text, values))).rows

  emit('plain', await rows('plain', SQL.PLAIN))
  emit('plain_again', await rows('plain_again', SQL.PLAIN))
  for (const name of ['ref', 'ref_2', 'ref_3']) emit(name, await rows(name, SQL.REF, [2]))
  emit('param', await rows('param', SQL.PARAM, [3]))
  emit('range', await rows('range', SQL.RANGE, [25]))
  emit('fetchval', await rows('fetchval', SQL.FETCHVAL, [41]))

  await rows('ryw', SQL.INSERT, [101, 'new', 7])
  emit('ryw', await rows('ryw', SQL.PARAM, [101]))

  emit('stale_before', await rows('stale', SQL.QTY, [2]))
  emit('stale_before_2', await rows('stale', SQL.QTY, [2]))
  await rows('stale', SQL.BUMP, [1, 2])
  emit('stale_after', await rows('stale', SQL.QTY, [2]))

  // BEGIN and COMMIT as applications send them: Query messages on both paths
  await step('tx', () => client.query('BEGIN'))
  await rows('tx', SQL.BUMP, [5, 1])
  emit('tx_inside', await rows('tx', SQL.QTY, [1]))
  await step('tx', () => client.query('COMMIT'))
  emit('tx_after', await rows('tx', SQL.QTY, [1]))

  for (const r of LOG_ROWS) await rows('batch', SQL.LOG_INSERT, r)
  emit('batch_after', await rows('batch', SQL.LOG_READ))

  emit('final', await rows('final', SQL.PLAIN))
  await step('close', () => client.end())
}

main().catch((err) => fail('main', err))
