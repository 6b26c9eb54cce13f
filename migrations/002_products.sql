-- 002_products.sql — the products service: catalogue, categories, variants, images.
--
-- Database "products", schema "products". The plan pairs this service with Elasticsearch for
-- search; here the JSONB names get a GIN index instead. Idempotent.

CREATE SCHEMA IF NOT EXISTS products;

CREATE TABLE IF NOT EXISTS products.categories (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    parent_id  uuid REFERENCES products.categories(id),
    name       jsonb NOT NULL,                    -- {"en": "...", "bn": "..."}
    slug       varchar(255) UNIQUE NOT NULL,
    level      int DEFAULT 0
);

CREATE TABLE IF NOT EXISTS products.products (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sku          varchar(100) UNIQUE NOT NULL,
    name         jsonb NOT NULL,                  -- {"en": "Product", "bn": "পণ্য"}
    description  jsonb,
    vendor_id    uuid NOT NULL,
    category_id  uuid,                            -- products.categories(id), not enforced (as planned)
    status       varchar(20) DEFAULT 'active',
    created_at   timestamptz DEFAULT now(),
    updated_at   timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS products.product_variants (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    product_id        uuid REFERENCES products.products(id),
    sku               varchar(100) UNIQUE NOT NULL,
    attributes        jsonb,                      -- {"color": "red", "size": "XL"}
    price             numeric(10, 2) NOT NULL,
    compare_at_price  numeric(10, 2),
    stock_quantity    int DEFAULT 0
);

CREATE TABLE IF NOT EXISTS products.product_images (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    product_id  uuid REFERENCES products.products(id),
    variant_id  uuid REFERENCES products.product_variants(id),
    url         text NOT NULL,
    alt_text    jsonb,
    position    int DEFAULT 0,
    is_primary  boolean DEFAULT false
);

CREATE INDEX IF NOT EXISTS idx_products_search ON products.products (status, vendor_id, category_id) INCLUDE (name, sku);
CREATE INDEX IF NOT EXISTS idx_products_name ON products.products USING gin (name jsonb_path_ops);
CREATE INDEX IF NOT EXISTS idx_product_variants_product ON products.product_variants (product_id);

INSERT INTO products.categories (id, parent_id, name, slug, level) VALUES
    ('22222222-0000-4222-8222-000000000001', NULL, '{"en": "Clothing", "bn": "পোশাক"}', 'clothing', 0),
    ('22222222-0000-4222-8222-000000000002', '22222222-0000-4222-8222-000000000001', '{"en": "Saree", "bn": "শাড়ি"}', 'saree', 1),
    ('22222222-0000-4222-8222-000000000003', NULL, '{"en": "Food", "bn": "খাবার"}', 'food', 0)
ON CONFLICT DO NOTHING;

INSERT INTO products.products (id, sku, name, description, vendor_id, category_id, status) VALUES
    ('22222222-1111-4222-8222-000000000001', 'SAREE-JAM-001', '{"en": "Jamdani saree", "bn": "জামদানি শাড়ি"}',
     '{"en": "Handwoven cotton jamdani"}', '22222222-9999-4222-8222-000000000001', '22222222-0000-4222-8222-000000000002', 'active'),
    ('22222222-1111-4222-8222-000000000002', 'TEA-SYL-250', '{"en": "Sylhet tea 250 g", "bn": "সিলেটি চা ২৫০ গ্রাম"}',
     '{"en": "Black tea from Sylhet"}', '22222222-9999-4222-8222-000000000002', '22222222-0000-4222-8222-000000000003', 'active'),
    ('22222222-1111-4222-8222-000000000003', 'HILSA-1KG', '{"en": "Hilsa fish 1 kg", "bn": "ইলিশ মাছ ১ কেজি"}',
     NULL, '22222222-9999-4222-8222-000000000002', '22222222-0000-4222-8222-000000000003', 'draft')
ON CONFLICT DO NOTHING;

INSERT INTO products.product_variants (id, product_id, sku, attributes, price, compare_at_price, stock_quantity) VALUES
    ('22222222-2222-4222-8222-000000000001', '22222222-1111-4222-8222-000000000001', 'SAREE-JAM-001-RED', '{"color": "red"}',  4500.00, 5200.00, 12),
    ('22222222-2222-4222-8222-000000000002', '22222222-1111-4222-8222-000000000001', 'SAREE-JAM-001-BLU', '{"color": "blue"}', 4500.00, NULL,    4),
    ('22222222-2222-4222-8222-000000000003', '22222222-1111-4222-8222-000000000002', 'TEA-SYL-250-STD',   '{}',                 350.00, NULL,  200)
ON CONFLICT DO NOTHING;

INSERT INTO products.product_images (id, product_id, variant_id, url, alt_text, position, is_primary) VALUES
    ('22222222-3333-4222-8222-000000000001', '22222222-1111-4222-8222-000000000001', '22222222-2222-4222-8222-000000000001',
     'https://cdn.example.com/p/saree-jam-001-red.jpg', '{"en": "Red jamdani saree"}', 0, true),
    ('22222222-3333-4222-8222-000000000002', '22222222-1111-4222-8222-000000000002', NULL,
     'https://cdn.example.com/p/tea-syl-250.jpg', '{"en": "Tea pack"}', 0, true)
ON CONFLICT DO NOTHING;
