-- 003_orders.sql — the orders service: orders, items, payments, shipments.
--
-- Database "orders", schema "orders". user_id / product_id / variant_id point into other
-- services' databases, so they are plain uuids without foreign keys. Idempotent.

CREATE SCHEMA IF NOT EXISTS orders;

CREATE TABLE IF NOT EXISTS orders.orders (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_number     varchar(50) UNIQUE NOT NULL,
    user_id          uuid NOT NULL,
    status           varchar(50) DEFAULT 'pending',
    subtotal         numeric(10, 2) NOT NULL,
    tax_amount       numeric(10, 2) DEFAULT 0,
    shipping_amount  numeric(10, 2) DEFAULT 0,
    discount_amount  numeric(10, 2) DEFAULT 0,
    total_amount     numeric(10, 2) NOT NULL,
    currency         varchar(3) DEFAULT 'BDT',
    created_at       timestamptz DEFAULT now(),
    updated_at       timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders.order_items (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id     uuid REFERENCES orders.orders(id),
    product_id   uuid NOT NULL,
    variant_id   uuid,
    quantity     int NOT NULL CHECK (quantity > 0),
    unit_price   numeric(10, 2) NOT NULL,
    total_price  numeric(10, 2) NOT NULL
);

CREATE TABLE IF NOT EXISTS orders.payments (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id          uuid REFERENCES orders.orders(id),
    method            varchar(50),               -- bkash, nagad, rocket, card
    status            varchar(50) DEFAULT 'pending',
    amount            numeric(10, 2) NOT NULL,
    transaction_id    varchar(255),
    gateway_response  jsonb,
    created_at        timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders.shipments (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id         uuid REFERENCES orders.orders(id),
    tracking_number  varchar(255),
    carrier          varchar(50),
    status           varchar(50) DEFAULT 'pending',
    shipped_at       timestamptz,
    delivered_at     timestamptz
);

CREATE INDEX IF NOT EXISTS idx_orders_user ON orders.orders (user_id, status, created_at) INCLUDE (total_amount, order_number);
CREATE INDEX IF NOT EXISTS idx_order_items_order ON orders.order_items (order_id);
CREATE INDEX IF NOT EXISTS idx_payments_order ON orders.payments (order_id);
CREATE INDEX IF NOT EXISTS idx_shipments_order ON orders.shipments (order_id);

INSERT INTO orders.orders (id, order_number, user_id, status, subtotal, tax_amount, shipping_amount, discount_amount, total_amount, created_at) VALUES
    ('33333333-0000-4333-8333-000000000001', 'ORD-2025-001', '11111111-1111-4111-8111-000000000001', 'delivered',
     9000.00, 0, 60.00, 500.00, 8560.00, '2025-07-21 11:00+06'),
    ('33333333-0000-4333-8333-000000000002', 'ORD-2025-002', '11111111-1111-4111-8111-000000000002', 'pending',
     700.00, 0, 60.00, 0, 760.00, '2025-07-22 15:20+06')
ON CONFLICT DO NOTHING;

INSERT INTO orders.order_items (id, order_id, product_id, variant_id, quantity, unit_price, total_price) VALUES
    ('33333333-1111-4333-8333-000000000001', '33333333-0000-4333-8333-000000000001', '22222222-1111-4222-8222-000000000001',
     '22222222-2222-4222-8222-000000000001', 2, 4500.00, 9000.00),
    ('33333333-1111-4333-8333-000000000002', '33333333-0000-4333-8333-000000000002', '22222222-1111-4222-8222-000000000002',
     '22222222-2222-4222-8222-000000000003', 2, 350.00, 700.00)
ON CONFLICT DO NOTHING;

INSERT INTO orders.payments (id, order_id, method, status, amount, transaction_id, gateway_response) VALUES
    ('33333333-2222-4333-8333-000000000001', '33333333-0000-4333-8333-000000000001', 'bkash', 'completed', 8560.00,
     'BK8X2F0001', '{"code": "0000", "message": "Successful"}'),
    ('33333333-2222-4333-8333-000000000002', '33333333-0000-4333-8333-000000000002', 'nagad', 'pending', 760.00, NULL, NULL)
ON CONFLICT DO NOTHING;

INSERT INTO orders.shipments (id, order_id, tracking_number, carrier, status, shipped_at, delivered_at) VALUES
    ('33333333-3333-4333-8333-000000000001', '33333333-0000-4333-8333-000000000001', 'PTH-100200300', 'Pathao',
     'delivered', '2025-07-22 09:00+06', '2025-07-23 17:30+06')
ON CONFLICT DO NOTHING;

-- Daily revenue, as in the plan's "materialized views for analytics".
CREATE MATERIALIZED VIEW IF NOT EXISTS orders.daily_order_summary AS
SELECT date(created_at)    AS order_date,
       count(*)            AS total_orders,
       sum(total_amount)   AS revenue,
       avg(total_amount)   AS avg_order_value
FROM orders.orders
GROUP BY date(created_at);
REFRESH MATERIALIZED VIEW orders.daily_order_summary;
