-- The driver workload through psql (tests/drivers/README.md), run as
--   psql -X -q -A -t -v ON_ERROR_STOP=1 -f workload.sql
-- psql speaks the simple protocol only: the parameters are psql variables it interpolates, and the
-- batched read-then-write is one Query message holding both statements (\;). Each step's label is
-- printed with \echo before its rows (`a|b|c` per row).
\echo @plain
SELECT /*drv-plain*/ id, name, qty FROM drv_items ORDER BY id;
\echo @plain_again
SELECT /*drv-plain*/ id, name, qty FROM drv_items ORDER BY id;
\set code 2
\echo @ref
SELECT code, label FROM drv_ref WHERE code = :code;
\echo @ref_2
SELECT code, label FROM drv_ref WHERE code = :code;
\echo @ref_3
SELECT code, label FROM drv_ref WHERE code = :code;
\set id 3
\echo @param
SELECT name, qty FROM drv_items WHERE id = :id;
\echo @range
SELECT id FROM drv_items WHERE qty > 25 ORDER BY id;
\echo @fetchval
SELECT 41::int + 1;
\echo @pipe
SELECT qty FROM drv_items WHERE id = 4\; UPDATE drv_items SET qty = qty + 100 WHERE id = 4 RETURNING qty;
\echo @pipe_after
SELECT qty FROM drv_items WHERE id = 4;
\set name 'new'
INSERT INTO drv_items (id, name, qty) VALUES (101, :'name', 7);
\echo @ryw
SELECT name, qty FROM drv_items WHERE id = 101;
\echo @stale_before
SELECT qty FROM drv_items WHERE id = 2;
\echo @stale_before_2
SELECT qty FROM drv_items WHERE id = 2;
UPDATE drv_items SET qty = qty + 1 WHERE id = 2;
\echo @stale_after
SELECT qty FROM drv_items WHERE id = 2;
BEGIN;
UPDATE drv_items SET qty = qty + 5 WHERE id = 1;
\echo @tx_inside
SELECT qty FROM drv_items WHERE id = 1;
COMMIT;
\echo @tx_after
SELECT qty FROM drv_items WHERE id = 1;
INSERT INTO drv_log (id, note) VALUES (1, 'a')\; INSERT INTO drv_log (id, note) VALUES (2, 'b')\; INSERT INTO drv_log (id, note) VALUES (3, 'c');
\echo @batch_after
SELECT id, note FROM drv_log ORDER BY id;
\echo @final
SELECT /*drv-plain*/ id, name, qty FROM drv_items ORDER BY id;
