-- orders/0002_sample_data.sql — SAMPLE DATA for the demo, not schema: three orders (two in July
-- 2025, one in August, so they land in orders.orders_2025_07 and orders.orders_2025_08) with
-- their items, payments and shipments, then a refresh of orders.daily_order_summary. user_id and
-- product_id are the fixed ids of the users and products sample data. Leave out of production.

INSERT INTO orders.orders (id, order_number, user_id, status, subtotal, tax_amount, shipping_amount, discount_amount, total_amount, created_at) VALUES
    ('33333333-0000-4333-8333-000000000001', 'ORD-2025-001', '11111111-1111-4111-8111-000000000001', 'delivered',
     9000.00, 0, 60.00, 500.00, 8560.00, '2025-07-21 11:00+06'),
    ('33333333-0000-4333-8333-000000000002', 'ORD-2025-002', '11111111-1111-4111-8111-000000000002', 'pending',
     700.00, 0, 60.00, 0, 760.00, '2025-07-22 15:20+06'),
    ('33333333-0000-4333-8333-000000000003', 'ORD-2025-003', '11111111-1111-4111-8111-000000000003', 'processing',
     840.00, 0, 60.00, 0, 900.00, '2025-08-02 09:15+06');

INSERT INTO orders.order_items (id, order_id, order_created_at, product_id, variant_id, quantity, unit_price, total_price) VALUES
    ('33333333-1111-4333-8333-000000000001', '33333333-0000-4333-8333-000000000001', '2025-07-21 11:00+06',
     '22222222-1111-4222-8222-000000000001', '22222222-2222-4222-8222-000000000001', 2, 4500.00, 9000.00),
    ('33333333-1111-4333-8333-000000000002', '33333333-0000-4333-8333-000000000002', '2025-07-22 15:20+06',
     '22222222-1111-4222-8222-000000000002', '22222222-2222-4222-8222-000000000003', 2, 350.00, 700.00),
    ('33333333-1111-4333-8333-000000000003', '33333333-0000-4333-8333-000000000003', '2025-08-02 09:15+06',
     '22222222-1111-4222-8222-000000000003', '22222222-2222-4222-8222-000000000004', 2, 420.00, 840.00);

INSERT INTO orders.payments (id, order_id, order_created_at, method, status, amount, transaction_id, gateway_response) VALUES
    ('33333333-2222-4333-8333-000000000001', '33333333-0000-4333-8333-000000000001', '2025-07-21 11:00+06',
     'bkash', 'completed', 8560.00, 'BK8X2F0001', '{"code": "0000", "message": "Successful"}'),
    ('33333333-2222-4333-8333-000000000002', '33333333-0000-4333-8333-000000000002', '2025-07-22 15:20+06',
     'nagad', 'pending', 760.00, NULL, NULL),
    ('33333333-2222-4333-8333-000000000003', '33333333-0000-4333-8333-000000000003', '2025-08-02 09:15+06',
     'rocket', 'completed', 900.00, 'RK77Q10003', '{"code": "0000", "message": "Successful"}');

INSERT INTO orders.shipments (id, order_id, order_created_at, tracking_number, carrier, status, shipped_at, delivered_at) VALUES
    ('33333333-3333-4333-8333-000000000001', '33333333-0000-4333-8333-000000000001', '2025-07-21 11:00+06',
     'PTH-100200300', 'Pathao', 'delivered', '2025-07-22 09:00+06', '2025-07-23 17:30+06');

REFRESH MATERIALIZED VIEW orders.daily_order_summary;
