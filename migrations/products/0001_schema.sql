-- products/0001_schema.sql — the products service: catalogue, categories, variants, images.
--
-- Database "products", every table in the schema "products" (products.products, ...) so that
-- routing rules can match on schema or table name. Names, descriptions and alt texts are JSONB
-- objects keyed by language: {"en": "Rice", "bn": "চাল"}. The plan pairs this service with
-- Elasticsearch for search; here the JSONB names get a GIN index instead.
-- Applied once by `pgrelay migrate`: never edit it after it has been applied.

CREATE SCHEMA products;

CREATE TABLE products.categories (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    parent_id  uuid REFERENCES products.categories (id),
    name       jsonb NOT NULL,                    -- {"en": "...", "bn": "..."}
    slug       varchar(255) UNIQUE NOT NULL,
    level      int DEFAULT 0
);

CREATE TABLE products.products (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    sku          varchar(100) UNIQUE NOT NULL,
    name         jsonb NOT NULL,                  -- {"en": "Product", "bn": "পণ্য"}
    description  jsonb,
    vendor_id    uuid NOT NULL,
    category_id  uuid,                            -- products.categories (id), not enforced (as planned)
    status       varchar(20) DEFAULT 'active',
    created_at   timestamptz DEFAULT now(),
    updated_at   timestamptz DEFAULT now()
);

CREATE TABLE products.product_variants (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    product_id        uuid REFERENCES products.products (id),
    sku               varchar(100) UNIQUE NOT NULL,
    attributes        jsonb,                      -- {"color": "red", "size": "XL"}
    price             numeric(10, 2) NOT NULL,
    compare_at_price  numeric(10, 2),
    stock_quantity    int DEFAULT 0
);

CREATE TABLE products.product_images (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    product_id  uuid REFERENCES products.products (id),
    variant_id  uuid REFERENCES products.product_variants (id),
    url         text NOT NULL,
    alt_text    jsonb,
    position    int DEFAULT 0,
    is_primary  boolean DEFAULT false
);

-- The plan's covering index: listing by status/vendor/category answers name and sku from the
-- index alone (INCLUDE columns are stored, not searched).
CREATE INDEX idx_products_search ON products.products (status, vendor_id, category_id) INCLUDE (name, sku);
-- Search inside the JSONB names (containment: name @> '{"bn": "চাল"}').
CREATE INDEX idx_products_name ON products.products USING gin (name jsonb_path_ops);
CREATE INDEX idx_product_variants_product ON products.product_variants (product_id);
CREATE INDEX idx_product_images_product ON products.product_images (product_id);
