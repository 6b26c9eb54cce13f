-- orders/0001_schema.sql — the orders service: orders (range-partitioned by month), items,
-- payments, shipments, and the daily_order_summary materialized view.
--
-- Database "orders", every table in the schema "orders" (orders.orders, orders.order_items, the
-- partitions orders.orders_2025_07, ...) so that routing rules can match on schema or table name.
-- user_id / product_id / variant_id point into other services' databases: plain uuids, no
-- foreign keys. Applied once by `pgrelay migrate`: never edit it after it has been applied.
--
-- PARTITIONING. The plan writes `ALTER TABLE orders PARTITION BY RANGE (created_at)`, which is not
-- PostgreSQL: an existing table cannot be turned into a partitioned one. What it means is done
-- here: orders.orders is created partitioned from the start, PARTITION BY RANGE (created_at), with
--   - one partition per month, orders.orders_YYYY_MM, for January 2025 through December 2026
--     (the plan's quarterly orders_2025_q1 becomes three monthly partitions), bounded at midnight
--     Asia/Dhaka (+06, no daylight saving) so a business day never straddles two partitions;
--   - a DEFAULT partition, orders.orders_default, for rows outside those months (nothing is
--     ever rejected for lack of a partition).
-- Later months are added with, e.g.:
--   CREATE TABLE orders.orders_2027_01 PARTITION OF orders.orders
--       FOR VALUES FROM ('2027-01-01 00:00+06') TO ('2027-02-01 00:00+06');
-- (that fails while orders.orders_default holds rows of that month: move them out first.)
-- PostgreSQL enforces uniqueness on a partitioned table only together with the partition key, so:
--   - the primary key is (id, created_at) — id stays a random uuid, unique in practice;
--   - the plan's UNIQUE (order_number) becomes UNIQUE (order_number, created_at); the order
--     service must keep generating distinct order numbers (ORD-2025-001, ...);
--   - the plan's `order_id REFERENCES orders(id)` in order_items, payments and shipments becomes
--     (order_id, order_created_at) REFERENCES orders.orders (id, created_at) MATCH FULL: each
--     child row carries its order's created_at (both set or both NULL).

CREATE SCHEMA orders;

CREATE TABLE orders.orders (
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    order_number     varchar(50) NOT NULL,
    user_id          uuid NOT NULL,
    status           varchar(50) DEFAULT 'pending',
    subtotal         numeric(10, 2) NOT NULL,
    tax_amount       numeric(10, 2) DEFAULT 0,
    shipping_amount  numeric(10, 2) DEFAULT 0,
    discount_amount  numeric(10, 2) DEFAULT 0,
    total_amount     numeric(10, 2) NOT NULL,
    currency         varchar(3) DEFAULT 'BDT',
    created_at       timestamptz NOT NULL DEFAULT now(),   -- the partition key
    updated_at       timestamptz DEFAULT now(),
    PRIMARY KEY (id, created_at),
    UNIQUE (order_number, created_at)
) PARTITION BY RANGE (created_at);

DO $$
DECLARE
    m date;
BEGIN
    FOR m IN SELECT generate_series(date '2025-01-01', date '2026-12-01', interval '1 month')::date LOOP
        EXECUTE format('CREATE TABLE orders.%I PARTITION OF orders.orders FOR VALUES FROM (%L) TO (%L)',
                       'orders_' || to_char(m, 'YYYY_MM'),
                       to_char(m, 'YYYY-MM-DD') || ' 00:00+06',
                       to_char(m + interval '1 month', 'YYYY-MM-DD') || ' 00:00+06');
    END LOOP;
END
$$;

CREATE TABLE orders.orders_default PARTITION OF orders.orders DEFAULT;

CREATE TABLE orders.order_items (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id          uuid,
    order_created_at  timestamptz,                -- the order's partition key, for the foreign key
    product_id        uuid NOT NULL,
    variant_id        uuid,
    quantity          int NOT NULL CHECK (quantity > 0),
    unit_price        numeric(10, 2) NOT NULL,
    total_price       numeric(10, 2) NOT NULL,
    FOREIGN KEY (order_id, order_created_at) REFERENCES orders.orders (id, created_at) MATCH FULL
);

CREATE TABLE orders.payments (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id          uuid,
    order_created_at  timestamptz,
    method            varchar(50),                -- bkash, nagad, rocket, card
    status            varchar(50) DEFAULT 'pending',
    amount            numeric(10, 2) NOT NULL,
    transaction_id    varchar(255),
    gateway_response  jsonb,
    created_at        timestamptz DEFAULT now(),
    FOREIGN KEY (order_id, order_created_at) REFERENCES orders.orders (id, created_at) MATCH FULL
);

CREATE TABLE orders.shipments (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id          uuid,
    order_created_at  timestamptz,
    tracking_number   varchar(255),
    carrier           varchar(50),
    status            varchar(50) DEFAULT 'pending',
    shipped_at        timestamptz,
    delivered_at      timestamptz,
    FOREIGN KEY (order_id, order_created_at) REFERENCES orders.orders (id, created_at) MATCH FULL
);

-- The plan's covering index for "this user's orders": created on orders.orders, so PostgreSQL
-- creates it on every partition (and on partitions added later).
CREATE INDEX idx_orders_user ON orders.orders (user_id, status, created_at) INCLUDE (total_amount, order_number);
CREATE INDEX idx_order_items_order ON orders.order_items (order_id, order_created_at);
CREATE INDEX idx_payments_order ON orders.payments (order_id, order_created_at);
CREATE INDEX idx_shipments_order ON orders.shipments (order_id, order_created_at);

-- The plan's "materialized views for analytics": revenue per day. The plan's DATE(created_at)
-- depends on the TimeZone of whoever refreshes the view; the day is taken in Asia/Dhaka, the
-- business's time zone, so every refresh gives the same days. The unique index allows
-- REFRESH MATERIALIZED VIEW CONCURRENTLY orders.daily_order_summary (readers are not blocked).
CREATE MATERIALIZED VIEW orders.daily_order_summary AS
SELECT (created_at AT TIME ZONE 'Asia/Dhaka')::date AS order_date,
       count(*)                                     AS total_orders,
       sum(total_amount)                            AS revenue,
       avg(total_amount)                            AS avg_order_value
FROM orders.orders
GROUP BY 1;

CREATE UNIQUE INDEX idx_daily_order_summary_date ON orders.daily_order_summary (order_date);
