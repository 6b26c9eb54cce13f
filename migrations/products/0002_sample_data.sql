-- products/0002_sample_data.sql — SAMPLE DATA for the demo, not schema: a few categories and
-- products with English and Bengali names in JSONB, their variants and images. Fixed ids: the
-- orders and analytics sample data refer to them. Leave this file out of production.

INSERT INTO products.categories (id, parent_id, name, slug, level) VALUES
    ('22222222-0000-4222-8222-000000000001', NULL, '{"en": "Clothing", "bn": "পোশাক"}', 'clothing', 0),
    ('22222222-0000-4222-8222-000000000002', '22222222-0000-4222-8222-000000000001', '{"en": "Saree", "bn": "শাড়ি"}', 'saree', 1),
    ('22222222-0000-4222-8222-000000000003', NULL, '{"en": "Food", "bn": "খাবার"}', 'food', 0);

INSERT INTO products.products (id, sku, name, description, vendor_id, category_id, status) VALUES
    ('22222222-1111-4222-8222-000000000001', 'SAREE-JAM-001', '{"en": "Jamdani saree", "bn": "জামদানি শাড়ি"}',
     '{"en": "Handwoven cotton jamdani", "bn": "হাতে বোনা সুতির জামদানি"}',
     '22222222-9999-4222-8222-000000000001', '22222222-0000-4222-8222-000000000002', 'active'),
    ('22222222-1111-4222-8222-000000000002', 'TEA-SYL-250', '{"en": "Sylhet tea 250 g", "bn": "সিলেটি চা ২৫০ গ্রাম"}',
     '{"en": "Black tea from Sylhet"}',
     '22222222-9999-4222-8222-000000000002', '22222222-0000-4222-8222-000000000003', 'active'),
    ('22222222-1111-4222-8222-000000000003', 'RICE-MINI-5KG', '{"en": "Rice", "bn": "চাল"}',
     '{"en": "Miniket rice, 5 kg bag", "bn": "মিনিকেট চাল, ৫ কেজি"}',
     '22222222-9999-4222-8222-000000000002', '22222222-0000-4222-8222-000000000003', 'active'),
    ('22222222-1111-4222-8222-000000000004', 'HILSA-1KG', '{"en": "Hilsa fish 1 kg", "bn": "ইলিশ মাছ ১ কেজি"}',
     NULL,
     '22222222-9999-4222-8222-000000000002', '22222222-0000-4222-8222-000000000003', 'draft');

INSERT INTO products.product_variants (id, product_id, sku, attributes, price, compare_at_price, stock_quantity) VALUES
    ('22222222-2222-4222-8222-000000000001', '22222222-1111-4222-8222-000000000001', 'SAREE-JAM-001-RED', '{"color": "red"}',  4500.00, 5200.00,  12),
    ('22222222-2222-4222-8222-000000000002', '22222222-1111-4222-8222-000000000001', 'SAREE-JAM-001-BLU', '{"color": "blue"}', 4500.00, NULL,      4),
    ('22222222-2222-4222-8222-000000000003', '22222222-1111-4222-8222-000000000002', 'TEA-SYL-250-STD',   '{}',                 350.00, NULL,    200),
    ('22222222-2222-4222-8222-000000000004', '22222222-1111-4222-8222-000000000003', 'RICE-MINI-5KG-STD', '{"weight": "5kg"}',  420.00,  450.00, 80);

INSERT INTO products.product_images (id, product_id, variant_id, url, alt_text, position, is_primary) VALUES
    ('22222222-3333-4222-8222-000000000001', '22222222-1111-4222-8222-000000000001', '22222222-2222-4222-8222-000000000001',
     'https://cdn.example.com/p/saree-jam-001-red.jpg', '{"en": "Red jamdani saree", "bn": "লাল জামদানি শাড়ি"}', 0, true),
    ('22222222-3333-4222-8222-000000000002', '22222222-1111-4222-8222-000000000002', NULL,
     'https://cdn.example.com/p/tea-syl-250.jpg', '{"en": "Tea pack", "bn": "চায়ের প্যাকেট"}', 0, true);
