-- notifications/0001_schema.sql — the notifications service: message templates and the send queue.
--
-- Database "notifications", every table in the schema "notifications" so that routing rules can
-- match on schema or table name. Applied once by `pgrelay migrate`: never edit it after it has
-- been applied.
--
-- FROM MONGODB. The plan keeps two MongoDB collections of documents; here each collection is a
-- table and each document one row:
--   - _id ObjectId()                 -> id uuid PRIMARY KEY DEFAULT gen_random_uuid();
--   - top-level scalar fields        -> typed columns (name, type, status, attempts, ...), with
--                                       the plan's "email|sms|push" / "pending|sent|failed" as CHECKs;
--   - nested objects (subject, content, data) -> jsonb columns, queried with ->, ->> and @>;
--   - arrays of strings (variables)  -> text[];
--   - ISODate()                      -> timestamptz; null -> NULL;
--   - any further fields a document may carry -> the jsonb column "extra" (default {}), so the
--     tables stay as open as the collections were.
-- The queue's template refers to notification_templates.name by foreign key.

CREATE SCHEMA notifications;

CREATE TABLE notifications.notification_templates (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        varchar(100) UNIQUE NOT NULL,          -- e.g. order_confirmation
    type        varchar(10) NOT NULL CHECK (type IN ('email', 'sms', 'push')),
    subject     jsonb,                                 -- {"en": "...", "bn": "..."}
    content     jsonb NOT NULL,                        -- {"en": "...", "bn": "..."}
    variables   text[] NOT NULL DEFAULT '{}',
    active      boolean NOT NULL DEFAULT true,
    extra       jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz DEFAULT now()
);

CREATE TABLE notifications.notification_queue (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL,
    type          varchar(10) NOT NULL CHECK (type IN ('email', 'sms', 'push')),
    template      varchar(100) NOT NULL REFERENCES notifications.notification_templates (name),
    data          jsonb NOT NULL DEFAULT '{}',
    status        varchar(10) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    scheduled_at  timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    attempts      int NOT NULL DEFAULT 0,
    last_error    text,
    extra         jsonb NOT NULL DEFAULT '{}'
);

-- The sender polls for due, pending messages.
CREATE INDEX idx_notification_queue_due ON notifications.notification_queue (scheduled_at)
    WHERE status = 'pending';
CREATE INDEX idx_notification_queue_user ON notifications.notification_queue (user_id, scheduled_at);
