-- users/0001_schema.sql — the users service: accounts, credentials, profiles, addresses.
--
-- Database "users" (database-per-service); every table lives in the schema "users" (users.users,
-- users.user_auth, ...) so that pgrelay's routing rules can match on the schema or table name.
-- Applied once by `pgrelay migrate` (recorded in public.pgrelay_migrations with its checksum):
-- never edit this file after it has been applied; add a new NNNN_name.sql instead.
-- PostgreSQL 13+ (gen_random_uuid() is built in).

CREATE SCHEMA users;

CREATE TABLE users.users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username    varchar(255) UNIQUE NOT NULL,
    email       varchar(255) UNIQUE NOT NULL,
    phone       varchar(20),
    nid_number  varchar(30),                      -- Bangladesh national ID
    created_at  timestamptz DEFAULT now(),
    updated_at  timestamptz DEFAULT now()
);

CREATE TABLE users.user_auth (
    user_id        uuid PRIMARY KEY REFERENCES users.users (id),
    password_hash  varchar(255) NOT NULL,
    mfa_enabled    boolean DEFAULT false,
    mfa_secret     varchar(255)
);

CREATE TABLE users.user_profiles (
    user_id              uuid PRIMARY KEY REFERENCES users.users (id),
    full_name            varchar(255),
    date_of_birth        date,
    gender               varchar(10),
    language_preference  varchar(10) DEFAULT 'en',
    timezone             varchar(50) DEFAULT 'Asia/Dhaka'
);

CREATE TABLE users.user_addresses (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid REFERENCES users.users (id),
    type        varchar(20) CHECK (type IN ('home', 'work', 'delivery')),
    division    varchar(50),
    district    varchar(50),
    upazila     varchar(50),
    details     text,
    is_default  boolean DEFAULT false
);

-- The plan's covering index for the hot lookup by e-mail / user name (as the plan writes it: all
-- four columns are key columns, so an index-only scan answers "id and created_at of this e-mail").
CREATE INDEX idx_users_lookup ON users.users (email, username, id, created_at);
CREATE INDEX idx_user_addresses_user ON users.user_addresses (user_id);
