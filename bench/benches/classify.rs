//! SQL classification, uncached beside a warmed cache.
//!
//! Three realistic statements: a point select, a join with a subquery and
//! a writable CTE. Side by side for each:
//! - `uncached`: `classify` (parse, protobuf → JSON, walk);
//! - `cached`: a warmed `ClassifierCache` (normalize, hash, one lookup);
//! - `normalize`: `pg_query::normalize` alone, the floor of a cache hit.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gatehouse_core::policy::{ClassifierCache, classify};

const STATEMENTS: &[(&str, &str)] = &[
    (
        "point select",
        "SELECT id, email, status FROM customers WHERE id = 42",
    ),
    (
        "join with subquery",
        "SELECT c.id, c.name, sum(o.total) AS spent FROM customers c \
         JOIN orders o ON o.customer_id = c.id \
         WHERE o.created_at > now() - interval '30 days' \
         AND c.id IN (SELECT customer_id FROM tickets WHERE status = 'open') \
         GROUP BY c.id, c.name ORDER BY spent DESC LIMIT 20",
    ),
    (
        "writable CTE",
        "WITH moved AS (DELETE FROM orders WHERE created_at < '2024-01-01' RETURNING *) \
         INSERT INTO orders_archive SELECT * FROM moved",
    ),
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify");
    let cache = ClassifierCache::default();
    for (name, sql) in STATEMENTS {
        assert!(classify(sql).is_ok(), "{name}");
        cache.classify(sql);
        group.bench_with_input(BenchmarkId::new("uncached", name), sql, |b, sql| {
            b.iter(|| classify(black_box(sql)))
        });
        group.bench_with_input(BenchmarkId::new("cached", name), sql, |b, sql| {
            b.iter(|| cache.classify(black_box(sql)))
        });
        group.bench_with_input(BenchmarkId::new("normalize", name), sql, |b, sql| {
            b.iter(|| pg_query::normalize(black_box(sql)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
