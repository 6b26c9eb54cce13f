-- The driver workload through pgbench (tests/drivers/README.md): one client, -t transactions, every
-- value fixed, so that the tables end in the same state through pgrelay as directly. A check that
-- fails runs a statement whose error names it, which aborts the client (pgbench exits 2).
SELECT /*drv-plain*/ id, name, qty FROM drv_items ORDER BY id;
SELECT code, label FROM drv_ref WHERE code = 2;
SELECT name, qty FROM drv_items WHERE id = 3;
-- a write, then a read of the written row (stale in the cache, or a replica behind: the old value)
SELECT qty AS before FROM drv_items WHERE id = 2 \gset
UPDATE drv_items SET qty = qty + 1 WHERE id = 2;
SELECT qty AS after FROM drv_items WHERE id = 2 \gset
\if :after != :before + 1
SELECT ('stale read after an update: ' || :after)::int;
\endif
-- read-your-writes of a new row
SELECT coalesce(max(id), 0) + 1 AS next FROM drv_log \gset
INSERT INTO drv_log (id, note) VALUES (:next, 'pgbench');
SELECT count(*) AS written FROM drv_log WHERE id = :next \gset
\if :written != 1
SELECT ('own insert not read: ' || :next)::int;
\endif
-- a transaction with a write
BEGIN;
UPDATE drv_items SET qty = qty + 5 WHERE id = 1;
SELECT qty AS in_tx FROM drv_items WHERE id = 1 \gset
END;
SELECT qty AS after_tx FROM drv_items WHERE id = 1 \gset
\if :after_tx != :in_tx
SELECT ('committed write not read: ' || :after_tx)::int;
\endif
