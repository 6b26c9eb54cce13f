-- analytics/0001_schema.sql — the analytics service: events, product views, purchase analytics.
--
-- Database "analytics", every table in the schema "analytics" (analytics.events, the partitions
-- analytics.events_2025_07, ...) so that routing rules can match on schema or table name.
-- Applied once by `pgrelay migrate`: never edit it after it has been applied.
--
-- FROM CLICKHOUSE. The plan keeps these tables in ClickHouse (ENGINE = MergeTree, PARTITION BY
-- toYYYYMM(timestamp), ORDER BY (timestamp, ...)). Here they are a PostgreSQL service like the
-- others, and each table maps as follows:
--   - MergeTree table       -> an append-only table: a BEFORE UPDATE OR DELETE row trigger
--                              rejects changes (INSERT only; retention by dropping or detaching
--                              whole partitions, or TRUNCATE, which the trigger does not block);
--   - PARTITION BY toYYYYMM -> PARTITION BY RANGE ("timestamp") with one partition per month,
--                              analytics.<table>_YYYY_MM for January 2025 through December 2026,
--                              bounded at midnight Asia/Dhaka (+06), plus <table>_default;
--   - ORDER BY (timestamp, k...) -> a BRIN index on "timestamp" (rows arrive in time order, so a
--                              BRIN index is tiny and prunes time ranges) and a btree on the other
--                              sort keys for per-user / per-product lookups;
--   - no primary keys, as in ClickHouse (event_id is unique in practice: a random uuid).
-- Types: String -> text, "String -- JSON" -> jsonb, IPv4 -> inet (CHECK family = 4),
-- DateTime64(3) -> timestamptz(3), UInt32 -> bigint CHECK (0 .. 4294967295),
-- Decimal64(2) -> numeric(18, 2), UUID -> uuid.

CREATE SCHEMA analytics;

CREATE TABLE analytics.events (
    event_id        uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id         uuid,
    session_id      uuid,
    event_type      text NOT NULL,
    event_category  text,
    event_data      jsonb,
    page_url        text,
    referrer        text,
    user_agent      text,
    ip_address      inet CHECK (family(ip_address) = 4),
    country         text,
    city            text,
    device_type     text,
    "timestamp"     timestamptz(3) NOT NULL DEFAULT now()
) PARTITION BY RANGE ("timestamp");

CREATE TABLE analytics.product_views (
    user_id           uuid,
    product_id        uuid NOT NULL,
    variant_id        uuid,
    source            text,
    duration_seconds  bigint CHECK (duration_seconds BETWEEN 0 AND 4294967295),
    "timestamp"       timestamptz(3) NOT NULL DEFAULT now()
) PARTITION BY RANGE ("timestamp");

CREATE TABLE analytics.purchase_analytics (
    order_id             uuid NOT NULL,
    user_id              uuid,
    total_amount         numeric(18, 2),
    items_count          bigint CHECK (items_count BETWEEN 0 AND 4294967295),
    payment_method       text,
    device_type          text,
    acquisition_channel  text,
    "timestamp"          timestamptz(3) NOT NULL DEFAULT now()
) PARTITION BY RANGE ("timestamp");

-- Monthly partitions and a default partition for each table.
DO $$
DECLARE
    t text;
    m date;
BEGIN
    FOREACH t IN ARRAY ARRAY['events', 'product_views', 'purchase_analytics'] LOOP
        FOR m IN SELECT generate_series(date '2025-01-01', date '2026-12-01', interval '1 month')::date LOOP
            EXECUTE format('CREATE TABLE analytics.%I PARTITION OF analytics.%I FOR VALUES FROM (%L) TO (%L)',
                           t || '_' || to_char(m, 'YYYY_MM'), t,
                           to_char(m, 'YYYY-MM-DD') || ' 00:00+06',
                           to_char(m + interval '1 month', 'YYYY-MM-DD') || ' 00:00+06');
        END LOOP;
        EXECUTE format('CREATE TABLE analytics.%I PARTITION OF analytics.%I DEFAULT', t || '_default', t);
    END LOOP;
END
$$;

-- ORDER BY keys of the plan.
CREATE INDEX idx_events_time ON analytics.events USING brin ("timestamp");
CREATE INDEX idx_events_user_type ON analytics.events (user_id, event_type, "timestamp");
CREATE INDEX idx_product_views_time ON analytics.product_views USING brin ("timestamp");
CREATE INDEX idx_product_views_product ON analytics.product_views (product_id, user_id, "timestamp");
CREATE INDEX idx_purchase_analytics_time ON analytics.purchase_analytics USING brin ("timestamp");
CREATE INDEX idx_purchase_analytics_user ON analytics.purchase_analytics (user_id, "timestamp");

-- Append-only, as MergeTree tables are: row triggers on a partitioned table are cloned onto
-- every partition, present and future.
CREATE FUNCTION analytics.reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'analytics.% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'feature_not_supported',
              HINT = 'Insert corrected rows instead; drop or detach whole partitions for retention.';
END
$$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON analytics.events
    FOR EACH ROW EXECUTE FUNCTION analytics.reject_change();
CREATE TRIGGER product_views_append_only BEFORE UPDATE OR DELETE ON analytics.product_views
    FOR EACH ROW EXECUTE FUNCTION analytics.reject_change();
CREATE TRIGGER purchase_analytics_append_only BEFORE UPDATE OR DELETE ON analytics.purchase_analytics
    FOR EACH ROW EXECUTE FUNCTION analytics.reject_change();
