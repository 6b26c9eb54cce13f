// What the Node.js driver workloads share: arguments, the output format, per-call time limits and
// the statements (tests/drivers/README.md). Output: one line per step, `label<TAB>JSON rows`.
'use strict'

const STEP_TIMEOUT_MS = 3000 // one driver call (a query here takes milliseconds)

function args(paths) {
  const a = { host: '127.0.0.1', user: 'app', dbname: 'appdb' }
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '')
    a[k] = argv[i + 1]
  }
  a.port = Number(a.port)
  if (!a.port || !a.password || !paths.includes(a.path)) {
    console.error(`usage: --port N --password P --path ${paths.join('|')} [--host H --user U --dbname D]`)
    process.exit(2)
  }
  return a
}

function emit(label, rows) {
  process.stdout.write(`${label}\t${JSON.stringify(rows)}\n`)
}

function fail(label, err) {
  process.stderr.write(`FAILED in step ${label}: ${err && err.stack ? err.stack.split('\n')[0] : err}\n`)
  process.exit(1)
}

// Runs fn() (a promise) with a time limit; a failure or a time-out ends the process.
async function step(label, fn) {
  let timer
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${STEP_TIMEOUT_MS / 1000} s`)), STEP_TIMEOUT_MS)
  })
  try {
    return await Promise.race([fn(), limit])
  } catch (err) {
    fail(label, err)
  } finally {
    clearTimeout(timer)
  }
}

module.exports = {
  STEP_TIMEOUT_MS,
  args,
  emit,
  fail,
  step,
  LOG_ROWS: [[1, 'a'], [2, 'b'], [3, 'c']],
  SQL: {
    PLAIN: 'SELECT /*drv-plain*/ id, name, qty FROM drv_items ORDER BY id',
    REF: 'SELECT code, label FROM drv_ref WHERE code = $1',
    PARAM: 'SELECT name, qty FROM drv_items WHERE id = $1',
    RANGE: 'SELECT id FROM drv_items WHERE qty > $1 ORDER BY id',
    FETCHVAL: 'SELECT $1::int + 1',
    INSERT: 'INSERT INTO drv_items (id, name, qty) VALUES ($1, $2, $3)',
    QTY: 'SELECT qty FROM drv_items WHERE id = $1',
    BUMP: 'UPDATE drv_items SET qty = qty + $1 WHERE id = $2',
    BUMP_RETURNING: 'UPDATE drv_items SET qty = qty + $1 WHERE id = $2 RETURNING qty',
    LOG_INSERT: 'INSERT INTO drv_log (id, note) VALUES ($1, $2)',
    LOG_READ: 'SELECT id, note FROM drv_log ORDER BY id',
  },
}
