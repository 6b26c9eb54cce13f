-- 001_users.sql — the users service: accounts, credentials, profiles, addresses.
--
-- Database "users" (database-per-service), every table in the schema "users" (users.users,
-- users.user_auth, ...), so that routing can match on schema and table names.
-- Idempotent: safe to run twice. Needs PostgreSQL 13+ (gen_random_uuid() is built in).

CREATE SCHEMA IF NOT EXISTS users;

CREATE TABLE IF NOT EXISTS users.users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username    varchar(255) UNIQUE NOT NULL,
    email       varchar(255) UNIQUE NOT NULL,
    phone       varchar(20),
    nid_number  varchar(30),                      -- Bangladesh national ID
    created_at  timestamptz DEFAULT now(),
    updated_at  timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS users.user_auth (
    user_id        uuid PRIMARY KEY REFERENCES users.users(id),
    password_hash  varchar(255) NOT NULL,
    mfa_enabled    boolean DEFAULT false,
    mfa_secret     varchar(255)
);

CREATE TABLE IF NOT EXISTS users.user_profiles (
    user_id              uuid PRIMARY KEY REFERENCES users.users(id),
    full_name            varchar(255),
    date_of_birth        date,
    gender               varchar(10),
    language_preference  varchar(10) DEFAULT 'en',
    timezone             varchar(50) DEFAULT 'Asia/Dhaka'
);

CREATE TABLE IF NOT EXISTS users.user_addresses (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid REFERENCES users.users(id),
    type        varchar(20) CHECK (type IN ('home', 'work', 'delivery')),
    division    varchar(50),
    district    varchar(50),
    upazila     varchar(50),
    details     text,
    is_default  boolean DEFAULT false
);

-- Covering index for the hot lookup by e-mail / user name.
CREATE INDEX IF NOT EXISTS idx_users_lookup ON users.users (email, username, id, created_at);
CREATE INDEX IF NOT EXISTS idx_user_addresses_user ON users.user_addresses (user_id);

-- Seed rows (fixed ids: the orders, analytics and notifications seeds refer to them).
INSERT INTO users.users (id, username, email, phone, nid_number, created_at) VALUES
    ('11111111-1111-4111-8111-000000000001', 'rahim',  'rahim@example.com',  '+8801711000001', '1990123456789', '2025-07-15 09:00+06'),
    ('11111111-1111-4111-8111-000000000002', 'karima', 'karima@example.com', '+8801811000002', '1988987654321', '2025-07-16 10:30+06'),
    ('11111111-1111-4111-8111-000000000003', 'tanvir', 'tanvir@example.com', '+8801911000003', NULL,            '2025-07-20 18:45+06')
ON CONFLICT DO NOTHING;

INSERT INTO users.user_auth (user_id, password_hash, mfa_enabled) VALUES
    ('11111111-1111-4111-8111-000000000001', '$2b$12$demo.hash.not.a.real.password.rahim....', true),
    ('11111111-1111-4111-8111-000000000002', '$2b$12$demo.hash.not.a.real.password.karima...', false),
    ('11111111-1111-4111-8111-000000000003', '$2b$12$demo.hash.not.a.real.password.tanvir...', false)
ON CONFLICT DO NOTHING;

INSERT INTO users.user_profiles (user_id, full_name, date_of_birth, gender, language_preference) VALUES
    ('11111111-1111-4111-8111-000000000001', 'Abdur Rahim',   '1990-03-12', 'male',   'bn'),
    ('11111111-1111-4111-8111-000000000002', 'Karima Begum',  '1988-11-02', 'female', 'en'),
    ('11111111-1111-4111-8111-000000000003', 'Tanvir Hossain', NULL,        NULL,     'bn')
ON CONFLICT DO NOTHING;

INSERT INTO users.user_addresses (id, user_id, type, division, district, upazila, details, is_default) VALUES
    ('11111111-2222-4111-8111-000000000001', '11111111-1111-4111-8111-000000000001', 'home',     'Dhaka',      'Dhaka',      'Dhanmondi', 'House 12, Road 5',     true),
    ('11111111-2222-4111-8111-000000000002', '11111111-1111-4111-8111-000000000001', 'work',     'Dhaka',      'Dhaka',      'Gulshan',   'Level 8, Tower A',     false),
    ('11111111-2222-4111-8111-000000000003', '11111111-1111-4111-8111-000000000002', 'delivery', 'Chattogram', 'Chattogram', 'Panchlaish', 'Flat 3B, Hill View',  true)
ON CONFLICT DO NOTHING;
