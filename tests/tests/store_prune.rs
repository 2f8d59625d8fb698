//! Retention (issue 6): `gatehouse store prune --before DATE` on a real
//! gateway's store. Sessions are recorded in two batches with a cut-off
//! between them (the gateway's clock cannot be faked, so the cut-off is a
//! moment between the batches) and checkpoints listing all of them. Then:
//! prune refuses while the gateway holds the store; with
//! `[store.retention] require_export = true` it refuses until `gatehouse
//! store export` has covered the old sessions; then it removes exactly the
//! old ones, and `gatehouse-audit verify --pubkey` is clean (the
//! checkpoints still list the pruned sessions, a signed prune record
//! vouches for their absence). A remaining session deleted by hand is
//! still reported.
//!
//! Needs the binaries: `cargo build --workspace --bins` first.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use gatehouse_store::Reader;
use gatehouse_tests::command::{render, run};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql, tamper};

const INTERVAL: Duration = Duration::from_millis(200);

fn audit(args: &[&str]) -> Output {
    let tool = Gateway::binary().with_file_name("gatehouse-audit");
    assert!(tool.is_file(), "run `cargo build --workspace --bins` first");
    run(
        Command::new(tool).args(args).env_remove("GATEHOUSE_STORE"),
        Duration::from_secs(60),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn ids(store: &Path) -> Vec<String> {
    let reader = Reader::open(store).expect("the store opens");
    reader
        .sessions()
        .map(|s| s.expect("a summary").id.to_string())
        .collect()
}

#[test]
fn prune_removes_old_sessions_keeps_the_store_verifiable_and_waits_for_an_export() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            store_config: format!("checkpoint_interval = \"{}ms\"", INTERVAL.as_millis()),
            extra_config: "[store.retention]\nrequire_export = true\n".to_owned(),
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs::default());
    let session = |sql: &str| {
        Psql::new(gw.conn_string(&token))
            .command(sql)
            .run()
            .assert_success();
    };
    session("select 1");
    session("select 2");
    std::thread::sleep(INTERVAL * 3);
    let cutoff_at = SystemTime::now();
    // As a time ago (the tests have no RFC 3339 formatter), taken afresh
    // for each command.
    let cutoff = || format!("{}us", cutoff_at.elapsed().expect("clock").as_micros());
    std::thread::sleep(INTERVAL);
    session("select 3");
    std::thread::sleep(INTERVAL * 3);

    let config = gw.config_path();
    let store = gw.store_dir();
    let prune = |extra: &[&str]| {
        let before = cutoff();
        let mut args = vec![
            "store",
            "prune",
            "--config",
            s(&config),
            "--before",
            &before,
        ];
        args.extend_from_slice(extra);
        Gateway::cli(args)
    };

    // The gateway holds the store.
    let out = prune(&[]);
    assert!(!out.status.success(), "{}", render(&out));
    assert!(text(&out).contains("stop the gateway"), "{}", render(&out));

    let status = gw.stop();
    assert!(status.success(), "exit status {status}\n{}", gw.log());
    let before = ids(&store);
    assert_eq!(before.len(), 3, "{before:?}");
    let (old, new) = before.split_at(2);

    // Nothing exported yet: refused, naming the first old session and the
    // command that covers it.
    let out = prune(&[]);
    assert!(!out.status.success(), "{}", render(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!("session {}", old[0]))
            && said.contains("require_export")
            && said.contains("gatehouse store export"),
        "{said}"
    );
    assert_eq!(ids(&store), before, "a refused prune removed something");
    // The store remembers the gateway's policy: without the config too.
    let out = Gateway::cli([
        "store",
        "prune",
        "--store",
        s(&store),
        "--seal-key",
        s(&gw.seal_key()),
        "--before",
        &cutoff(),
    ]);
    assert!(!out.status.success(), "{}", render(&out));
    assert!(text(&out).contains("require_export"), "{}", render(&out));
    assert_eq!(ids(&store), before, "a refused prune removed something");

    // A dry run says what would go.
    let out = prune(&["--dry-run"]);
    assert!(out.status.success(), "{}", render(&out));
    let said = text(&out);
    assert!(said.contains("would prune 2 sessions"), "{said}");
    assert!(said.contains(&old[1]) && !said.contains(&new[0]), "{said}");

    // An export of the old range, recorded in the store; then prune runs.
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("old.ghar");
    let out = Gateway::cli([
        "store",
        "export",
        "--store",
        s(&store),
        "--seal-key",
        s(&gw.seal_key()),
        "--until",
        &cutoff(),
        "--out",
        s(&archive),
    ]);
    assert!(out.status.success(), "{}", render(&out));
    assert!(
        text(&out).contains("recorded export #0"),
        "{}",
        render(&out)
    );

    let out = prune(&[]);
    assert!(out.status.success(), "{}", render(&out));
    let said = text(&out);
    assert!(
        said.contains("pruned 2 sessions") && said.contains("prune record #0 (signed"),
        "{said}"
    );
    assert_eq!(ids(&store), new, "only the new session remains");
    {
        let reader = Reader::open(&store).expect("the store opens");
        let gone = old[0].parse().expect("an id");
        assert_eq!(
            reader.raw_events(gone).count(),
            0,
            "events of a pruned session"
        );
        assert!(reader.checkpoints().count() >= 2, "checkpoints are kept");
    }
    // A second run has nothing left to do.
    let out = prune(&[]);
    assert!(out.status.success(), "{}", render(&out));
    assert!(text(&out).contains("nothing to prune"), "{}", render(&out));

    // The store verifies clean: the checkpoints list the pruned sessions,
    // the signed prune record accounts for them.
    let pubkey = gw.seal_public_key();
    let out = audit(&["verify", "--store", s(&store), "--pubkey", s(&pubkey)]);
    assert!(out.status.success(), "{}", render(&out));
    assert!(
        text(&out).contains("2 listed sessions removed by signed prune records"),
        "{}",
        render(&out)
    );
    // The archive taken before the prune still verifies on its own.
    let out = audit(&["verify", "--store", s(&archive), "--pubkey", s(&pubkey)]);
    assert!(out.status.success(), "{}", render(&out));

    // The remaining session, deleted by hand: reported as deleted.
    let kept: gatehouse_core::event::SessionId = new[0].parse().expect("an id");
    {
        let db = fjall::Database::builder(&store)
            .open()
            .expect("fjall opens");
        let ks = |n: &str| {
            db.keyspace(n, fjall::KeyspaceCreateOptions::default)
                .expect("keyspace")
        };
        let (events, sessions) = (ks("events"), ks("sessions"));
        tamper::remove_events(&events, kept);
        sessions.remove(kept.0).expect("remove");
        db.persist(fjall::PersistMode::SyncAll).expect("persist");
    }
    let out = audit(&["verify", "--store", s(&store), "--pubkey", s(&pubkey)]);
    assert_eq!(out.status.code(), Some(1), "{}", render(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!("BREAK session {kept}: missing: deleted session")),
        "{said}"
    );
}
