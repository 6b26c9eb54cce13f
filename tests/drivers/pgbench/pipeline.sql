-- Put before workload.sql for -M extended and -M prepared (pgbench has no pipeline in simple mode):
-- a read then a write of the same row in one pipeline, that is before one Sync. In the first
-- transaction it is the client's first write (its read could go to a replica).
SELECT qty AS p0 FROM drv_items WHERE id = 4 \gset
\startpipeline
SELECT qty FROM drv_items WHERE id = 4;
UPDATE drv_items SET qty = qty + 100 WHERE id = 4;
\endpipeline
SELECT qty AS p1 FROM drv_items WHERE id = 4 \gset
\if :p1 != :p0 + 100
SELECT ('pipelined write not read: ' || :p1)::int;
\endif
