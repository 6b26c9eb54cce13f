-- 004_analytics.sql — the analytics service: events, product views, purchase analytics.
--
-- Database "analytics", schema "analytics". The plan keeps these in ClickHouse (MergeTree,
-- partitioned by month, ordered by time); here they are append-only PostgreSQL tables with
-- BRIN indexes on the time column and btree indexes on the plan's ORDER BY keys.
-- ClickHouse types map as: String -> text, IPv4 -> inet, DateTime64(3) -> timestamptz(3),
-- UInt32 -> integer (CHECK >= 0), Decimal64(2) -> numeric(18, 2). Idempotent.

CREATE SCHEMA IF NOT EXISTS analytics;

CREATE TABLE IF NOT EXISTS analytics.events (
    event_id        uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id         uuid,
    session_id      uuid,
    event_type      text NOT NULL,
    event_category  text,
    event_data      jsonb,                        -- "String -- JSON" in the plan
    page_url        text,
    referrer        text,
    user_agent      text,
    ip_address      inet,
    country         text,
    city            text,
    device_type     text,
    "timestamp"     timestamptz(3) NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS analytics.product_views (
    user_id           uuid,
    product_id        uuid NOT NULL,
    variant_id        uuid,
    source            text,
    duration_seconds  integer CHECK (duration_seconds >= 0),
    "timestamp"       timestamptz(3) NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS analytics.purchase_analytics (
    order_id             uuid NOT NULL,
    user_id              uuid,
    total_amount         numeric(18, 2),
    items_count          integer CHECK (items_count >= 0),
    payment_method       text,
    device_type          text,
    acquisition_channel  text,
    "timestamp"          timestamptz(3) NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS idx_events_time ON analytics.events USING brin ("timestamp");
CREATE INDEX IF NOT EXISTS idx_events_user_type ON analytics.events (user_id, event_type, "timestamp");
CREATE INDEX IF NOT EXISTS idx_product_views_time ON analytics.product_views USING brin ("timestamp");
CREATE INDEX IF NOT EXISTS idx_product_views_product ON analytics.product_views (product_id, user_id, "timestamp");
CREATE INDEX IF NOT EXISTS idx_purchase_analytics_time ON analytics.purchase_analytics USING brin ("timestamp");
CREATE UNIQUE INDEX IF NOT EXISTS idx_purchase_analytics_order ON analytics.purchase_analytics (order_id);

-- Seed rows: no primary keys on these fact tables, so insert only into an empty table.
INSERT INTO analytics.events (event_id, user_id, session_id, event_type, event_category, event_data, page_url, referrer,
                              user_agent, ip_address, country, city, device_type, "timestamp")
SELECT * FROM (VALUES
    ('44444444-0000-4444-8444-000000000001'::uuid, '11111111-1111-4111-8111-000000000001'::uuid, '44444444-5555-4444-8444-000000000001'::uuid,
     'page_view', 'navigation', '{"page": "home"}'::jsonb, '/', 'https://www.google.com/', 'Mozilla/5.0 (Android 14)',
     '103.4.145.10'::inet, 'BD', 'Dhaka', 'mobile', '2025-07-21 10:50:00.123+06'::timestamptz),
    ('44444444-0000-4444-8444-000000000002', '11111111-1111-4111-8111-000000000001', '44444444-5555-4444-8444-000000000001',
     'add_to_cart', 'commerce', '{"sku": "SAREE-JAM-001-RED", "qty": 2}', '/p/saree-jam-001', '/', 'Mozilla/5.0 (Android 14)',
     '103.4.145.10', 'BD', 'Dhaka', 'mobile', '2025-07-21 10:55:12.500+06'),
    ('44444444-0000-4444-8444-000000000003', '11111111-1111-4111-8111-000000000002', '44444444-5555-4444-8444-000000000002',
     'purchase', 'commerce', '{"order_number": "ORD-2025-002"}', '/checkout', '/cart', 'Mozilla/5.0 (Windows NT 10.0)',
     '114.130.1.20', 'BD', 'Chattogram', 'desktop', '2025-07-22 15:20:01.000+06')
) AS seed
WHERE NOT EXISTS (SELECT 1 FROM analytics.events);

INSERT INTO analytics.product_views (user_id, product_id, variant_id, source, duration_seconds, "timestamp")
SELECT * FROM (VALUES
    ('11111111-1111-4111-8111-000000000001'::uuid, '22222222-1111-4222-8222-000000000001'::uuid,
     '22222222-2222-4222-8222-000000000001'::uuid, 'search', 42, '2025-07-21 10:52:00+06'::timestamptz),
    ('11111111-1111-4111-8111-000000000002', '22222222-1111-4222-8222-000000000002', NULL, 'home_feed', 15, '2025-07-22 15:10:00+06')
) AS seed
WHERE NOT EXISTS (SELECT 1 FROM analytics.product_views);

INSERT INTO analytics.purchase_analytics (order_id, user_id, total_amount, items_count, payment_method, device_type,
                                          acquisition_channel, "timestamp") VALUES
    ('33333333-0000-4333-8333-000000000001', '11111111-1111-4111-8111-000000000001', 8560.00, 2, 'bkash', 'mobile', 'organic_search', '2025-07-21 11:00+06'),
    ('33333333-0000-4333-8333-000000000002', '11111111-1111-4111-8111-000000000002', 760.00, 2, 'nagad', 'desktop', 'direct', '2025-07-22 15:20+06')
ON CONFLICT DO NOTHING;
