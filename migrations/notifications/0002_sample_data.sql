-- notifications/0002_sample_data.sql — SAMPLE DATA for the demo, not schema: two templates in
-- English and Bengali and three queued messages (sent, pending, failed) for the sample users
-- and orders. Leave out of production.

INSERT INTO notifications.notification_templates (id, name, type, subject, content, variables, active) VALUES
    ('55555555-0000-4555-8555-000000000001', 'order_confirmation', 'email',
     '{"en": "Order Confirmed - {{order_number}}", "bn": "অর্ডার নিশ্চিত - {{order_number}}"}',
     '{"en": "Your order has been confirmed...", "bn": "আপনার অর্ডার নিশ্চিত করা হয়েছে..."}',
     '{order_number,total_amount,items}', true),
    ('55555555-0000-4555-8555-000000000002', 'order_shipped', 'sms',
     NULL,
     '{"en": "Order {{order_number}} is on its way: {{tracking_number}}", "bn": "অর্ডার {{order_number}} পাঠানো হয়েছে: {{tracking_number}}"}',
     '{order_number,tracking_number}', true);

INSERT INTO notifications.notification_queue (id, user_id, type, template, data, status, scheduled_at, sent_at, attempts, last_error) VALUES
    ('55555555-1111-4555-8555-000000000001', '11111111-1111-4111-8111-000000000001', 'email', 'order_confirmation',
     '{"order_number": "ORD-2025-001", "total_amount": 8560.00, "items": []}', 'sent',
     '2025-07-21 11:00+06', '2025-07-21 11:00:05+06', 1, NULL),
    ('55555555-1111-4555-8555-000000000002', '11111111-1111-4111-8111-000000000002', 'email', 'order_confirmation',
     '{"order_number": "ORD-2025-002", "total_amount": 760.00, "items": []}', 'pending',
     '2025-07-22 15:20+06', NULL, 0, NULL),
    ('55555555-1111-4555-8555-000000000003', '11111111-1111-4111-8111-000000000001', 'sms', 'order_shipped',
     '{"order_number": "ORD-2025-001", "tracking_number": "PTH-100200300"}', 'failed',
     '2025-07-22 09:00+06', NULL, 3, 'gateway timeout');
