-- analytics/0002_sample_data.sql — SAMPLE DATA for the demo, not schema: a short shopping
-- session (page view, product view, add to cart, purchase) for the users, products and orders
-- of the other services' sample data. Leave out of production.

INSERT INTO analytics.events (event_id, user_id, session_id, event_type, event_category, event_data, page_url, referrer,
                              user_agent, ip_address, country, city, device_type, "timestamp") VALUES
    ('44444444-0000-4444-8444-000000000001', '11111111-1111-4111-8111-000000000001', '44444444-5555-4444-8444-000000000001',
     'page_view', 'navigation', '{"page": "home"}', '/', 'https://www.google.com/', 'Mozilla/5.0 (Android 14)',
     '103.4.145.10', 'BD', 'Dhaka', 'mobile', '2025-07-21 10:50:00.123+06'),
    ('44444444-0000-4444-8444-000000000002', '11111111-1111-4111-8111-000000000001', '44444444-5555-4444-8444-000000000001',
     'add_to_cart', 'commerce', '{"sku": "SAREE-JAM-001-RED", "qty": 2}', '/p/saree-jam-001', '/', 'Mozilla/5.0 (Android 14)',
     '103.4.145.10', 'BD', 'Dhaka', 'mobile', '2025-07-21 10:55:12.500+06'),
    ('44444444-0000-4444-8444-000000000003', '11111111-1111-4111-8111-000000000002', '44444444-5555-4444-8444-000000000002',
     'purchase', 'commerce', '{"order_number": "ORD-2025-002"}', '/checkout', '/cart', 'Mozilla/5.0 (Windows NT 10.0)',
     '114.130.1.20', 'BD', 'Chattogram', 'desktop', '2025-07-22 15:20:01.000+06');

INSERT INTO analytics.product_views (user_id, product_id, variant_id, source, duration_seconds, "timestamp") VALUES
    ('11111111-1111-4111-8111-000000000001', '22222222-1111-4222-8222-000000000001', '22222222-2222-4222-8222-000000000001',
     'search', 42, '2025-07-21 10:52:00+06'),
    ('11111111-1111-4111-8111-000000000002', '22222222-1111-4222-8222-000000000002', NULL, 'home_feed', 15, '2025-07-22 15:10:00+06'),
    ('11111111-1111-4111-8111-000000000003', '22222222-1111-4222-8222-000000000003', NULL, 'search', 9, '2025-08-02 09:05:00+06');

INSERT INTO analytics.purchase_analytics (order_id, user_id, total_amount, items_count, payment_method, device_type,
                                          acquisition_channel, "timestamp") VALUES
    ('33333333-0000-4333-8333-000000000001', '11111111-1111-4111-8111-000000000001', 8560.00, 2, 'bkash',  'mobile',  'organic_search', '2025-07-21 11:00+06'),
    ('33333333-0000-4333-8333-000000000002', '11111111-1111-4111-8111-000000000002', 760.00,  2, 'nagad',  'desktop', 'direct',         '2025-07-22 15:20+06'),
    ('33333333-0000-4333-8333-000000000003', '11111111-1111-4111-8111-000000000003', 900.00,  2, 'rocket', 'mobile',  'facebook_ad',    '2025-08-02 09:15+06');
