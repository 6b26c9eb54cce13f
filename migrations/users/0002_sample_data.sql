-- users/0002_sample_data.sql — SAMPLE DATA for the demo, not schema: three accounts with their
-- credentials, profiles and addresses. The ids are fixed because the orders, analytics and
-- notifications sample data refer to them (across databases, so without foreign keys).
-- Leave this file out of a production migrations directory.

INSERT INTO users.users (id, username, email, phone, nid_number, created_at) VALUES
    ('11111111-1111-4111-8111-000000000001', 'rahim',  'rahim@example.com',  '+8801711000001', '1990123456789', '2025-07-15 09:00+06'),
    ('11111111-1111-4111-8111-000000000002', 'karima', 'karima@example.com', '+8801811000002', '1988987654321', '2025-07-16 10:30+06'),
    ('11111111-1111-4111-8111-000000000003', 'tanvir', 'tanvir@example.com', '+8801911000003', NULL,            '2025-07-20 18:45+06');

INSERT INTO users.user_auth (user_id, password_hash, mfa_enabled) VALUES
    ('11111111-1111-4111-8111-000000000001', '$2b$12$demo.hash.not.a.real.password.rahim....', true),
    ('11111111-1111-4111-8111-000000000002', '$2b$12$demo.hash.not.a.real.password.karima...', false),
    ('11111111-1111-4111-8111-000000000003', '$2b$12$demo.hash.not.a.real.password.tanvir...', false);

INSERT INTO users.user_profiles (user_id, full_name, date_of_birth, gender, language_preference) VALUES
    ('11111111-1111-4111-8111-000000000001', 'Abdur Rahim',    '1990-03-12', 'male',   'bn'),
    ('11111111-1111-4111-8111-000000000002', 'Karima Begum',   '1988-11-02', 'female', 'en'),
    ('11111111-1111-4111-8111-000000000003', 'Tanvir Hossain', NULL,         NULL,     'bn');

INSERT INTO users.user_addresses (id, user_id, type, division, district, upazila, details, is_default) VALUES
    ('11111111-2222-4111-8111-000000000001', '11111111-1111-4111-8111-000000000001', 'home',     'Dhaka',      'Dhaka',      'Dhanmondi',  'House 12, Road 5',   true),
    ('11111111-2222-4111-8111-000000000002', '11111111-1111-4111-8111-000000000001', 'work',     'Dhaka',      'Dhaka',      'Gulshan',    'Level 8, Tower A',   false),
    ('11111111-2222-4111-8111-000000000003', '11111111-1111-4111-8111-000000000002', 'delivery', 'Chattogram', 'Chattogram', 'Panchlaish', 'Flat 3B, Hill View', true);
