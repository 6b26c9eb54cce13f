-- 005_notifications.sql — the notifications service: message templates and the send queue.
--
-- Database "notifications", schema "notifications". The plan keeps these as MongoDB documents;
-- here each document is a row, nested objects (subject, content, data) are jsonb and the
-- variables list is text[]. Idempotent.

CREATE SCHEMA IF NOT EXISTS notifications;

CREATE TABLE IF NOT EXISTS notifications.notification_templates (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        varchar(100) UNIQUE NOT NULL,          -- e.g. order_confirmation
    type        varchar(10) NOT NULL CHECK (type IN ('email', 'sms', 'push')),
    subject     jsonb,                                 -- {"en": "...", "bn": "..."}
    content     jsonb NOT NULL,                        -- {"en": "...", "bn": "..."}
    variables   text[] NOT NULL DEFAULT '{}',
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS notifications.notification_queue (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL,
    type          varchar(10) NOT NULL CHECK (type IN ('email', 'sms', 'push')),
    template      varchar(100) NOT NULL REFERENCES notifications.notification_templates(name),
    data          jsonb NOT NULL DEFAULT '{}',
    status        varchar(10) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    scheduled_at  timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    attempts      int NOT NULL DEFAULT 0,
    last_error    text
);

-- The sender polls for due, pending messages.
CREATE INDEX IF NOT EXISTS idx_notification_queue_due ON notifications.notification_queue (scheduled_at)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS idx_notification_queue_user ON notifications.notification_queue (user_id, scheduled_at);

INSERT INTO notifications.notification_templates (id, name, type, subject, content, variables, active) VALUES
    ('55555555-0000-4555-8555-000000000001', 'order_confirmation', 'email',
     '{"en": "Order Confirmed - {{order_number}}", "bn": "অর্ডার নিশ্চিত - {{order_number}}"}',
     '{"en": "Your order has been confirmed...", "bn": "আপনার অর্ডার নিশ্চিত করা হয়েছে..."}',
     '{order_number,total_amount,items}', true),
    ('55555555-0000-4555-8555-000000000002', 'order_shipped', 'sms',
     NULL,
     '{"en": "Order {{order_number}} is on its way: {{tracking_number}}", "bn": "অর্ডার {{order_number}} পাঠানো হয়েছে: {{tracking_number}}"}',
     '{order_number,tracking_number}', true)
ON CONFLICT DO NOTHING;

INSERT INTO notifications.notification_queue (id, user_id, type, template, data, status, scheduled_at, sent_at, attempts, last_error) VALUES
    ('55555555-1111-4555-8555-000000000001', '11111111-1111-4111-8111-000000000001', 'email', 'order_confirmation',
     '{"order_number": "ORD-2025-001", "total_amount": 8560.00, "items": []}', 'sent',
     '2025-07-21 11:00+06', '2025-07-21 11:00:05+06', 1, NULL),
    ('55555555-1111-4555-8555-000000000002', '11111111-1111-4111-8111-000000000002', 'email', 'order_confirmation',
     '{"order_number": "ORD-2025-002", "total_amount": 760.00, "items": []}', 'pending',
     '2025-07-22 15:20+06', NULL, 0, NULL),
    ('55555555-1111-4555-8555-000000000003', '11111111-1111-4111-8111-000000000001', 'sms', 'order_shipped',
     '{"order_number": "ORD-2025-001", "tracking_number": "PTH-100200300"}', 'failed',
     '2025-07-22 09:00+06', NULL, 3, 'gateway timeout')
ON CONFLICT DO NOTHING;
