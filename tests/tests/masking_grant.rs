//! A grant masks more than its target, never less.
//!
//! The `orders` target masks the `ssn` column and e-mail addresses. Through
//! the gateway, with real tokio-postgres sessions:
//!
//! - a grant without masking rules sees what the target masks, and the
//!   rest as stored;
//! - a grant minted with `--mask-column notes --mask-detector phone=partial`
//!   also has `notes` redacted and phone numbers partly hidden, on the
//!   client and in the recording (the `Masked` events name the grant's
//!   rules; the notes never reach the store from that session);
//! - a grant that asks for less on a column or detector the target masks
//!   (`ssn=partial`, `email=null`) gets the target's strategy;
//! - a grant whose rules cannot be used on the target (`token` without the
//!   target's token secret) is refused at login with 28000 naming why,
//!   spends no use, and the refusal is recorded.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use gatehouse_core::event::{Body, Event};
use gatehouse_store::Reader;
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, User};

/// The target's own masking: the ssn column and e-mail addresses.
const MASKING: &str = r#"
detectors = { email = "redact" }

[[columns]]
pattern = "ssn"
strategy = "redact"
"#;

const SETUP: &str = "
create table contacts (id int primary key, email text, ssn text, phone text, notes text);
insert into contacts values
    (1, 'ann@example.com', '123-45-6789', '+1 415 555 2671', 'met at the Falcon kickoff');
";

const SELECT: &str = "select email, ssn, phone, notes from contacts where id = 1";
const NOTES: &str = "met at the Falcon kickoff";
const PHONE: &str = "+1 415 555 2671";

fn grant(gw: &Gateway, purpose: &str, mask: &[&str]) -> (String, String) {
    let token = gw.grant(&GrantArgs {
        purpose: purpose.to_owned(),
        extra: mask.iter().map(|s| (*s).to_owned()).collect(),
        ..GrantArgs::default()
    });
    let jti = decode_claims(&token).expect("claims")["jti"]
        .as_str()
        .expect("jti")
        .to_owned();
    (token, jti)
}

async fn row(gw: &Gateway, token: &str) -> Vec<Option<String>> {
    let (client, conn) = gw.connect(token).await;
    let row = client.query_one(SELECT, &[]).await.expect("the select");
    let values = (0..4).map(|i| row.get::<_, Option<String>>(i)).collect();
    drop(client);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), conn).await;
    values
}

fn events_of(reader: &Reader, jti: &str) -> Vec<Event> {
    let mut events = Vec::new();
    for summary in reader.sessions() {
        let summary = summary.expect("a summary");
        let opened = summary.opened.as_ref().map(|o| o.jti.as_str());
        let refused = summary.refused.as_ref().and_then(|r| r.jti.as_deref());
        if opened.or(refused) == Some(jti) {
            events.extend(reader.events(summary.id).map(|e| e.expect("an event")));
        }
    }
    events
}

#[tokio::test]
async fn a_grant_masks_more_than_its_target_never_less() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions::default().with_masking("orders", MASKING),
    );
    pg.client(User::App)
        .await
        .batch_execute(SETUP)
        .await
        .expect("create the table directly");

    // The target's masking only.
    let (plain, _) = grant(&gw, "no extra masking", &[]);
    assert_eq!(
        row(&gw, &plain).await,
        [Some("****"), Some("****"), Some(PHONE), Some(NOTES)].map(|v| v.map(str::to_owned))
    );

    // The grant masks the notes and phone numbers too.
    let (narrow, narrow_jti) = grant(
        &gw,
        "masks more",
        &["--mask-column", "notes", "--mask-detector", "phone=partial"],
    );
    let seen = row(&gw, &narrow).await;
    assert_eq!(
        seen[..2],
        [Some("****".to_owned()), Some("****".to_owned())]
    );
    assert_eq!(seen[3].as_deref(), Some("****"), "{seen:?}");
    let phone = seen[2].as_deref().expect("a phone");
    assert!(
        phone.starts_with("****") && phone.ends_with("2671"),
        "{seen:?}"
    );

    // Asking for less on what the target masks gets the target's strategy.
    let (looser, _) = grant(
        &gw,
        "asks for less",
        &[
            "--mask-column",
            "ssn=partial",
            "--mask-detector",
            "email=null",
        ],
    );
    assert_eq!(
        row(&gw, &looser).await,
        [Some("****"), Some("****"), Some(PHONE), Some(NOTES)].map(|v| v.map(str::to_owned))
    );

    // Rules the target cannot apply: refused at login, no use spent.
    let (unusable, unusable_jti) = grant(
        &gw,
        "token without a secret",
        &["--uses", "1", "--mask-column", "notes=token"],
    );
    let Err(err) = gw.try_connect(&unusable).await else {
        panic!("a grant whose masking cannot be used must be refused");
    };
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "28000", "{db:?}");
    assert!(
        db.message()
            .contains("masking rules for target orders cannot be used"),
        "{}",
        db.message()
    );

    gw.stop();
    let reader = Reader::open(&gw.store_dir()).expect("open the store");
    let narrow_events = events_of(&reader, &narrow_jti);
    let mut hits = Vec::new();
    for event in &narrow_events {
        match &event.body {
            Body::Masked(m) => {
                hits.extend(m.hits.iter().map(|h| (h.rule.clone(), h.column.clone())))
            }
            Body::Frame(f) => {
                let text = String::from_utf8_lossy(&f.bytes);
                assert!(
                    !text.contains(NOTES) && !text.contains(PHONE),
                    "recorded: {text}"
                );
            }
            _ => {}
        }
    }
    hits.sort();
    assert_eq!(
        hits,
        [
            ("column:notes", "notes"),
            ("column:ssn", "ssn"),
            ("detector:email", "email"),
            ("detector:phone", "phone"),
        ]
        .map(|(r, c)| (r.to_owned(), c.to_owned()))
    );
    let refused: Vec<_> = events_of(&reader, &unusable_jti)
        .into_iter()
        .filter_map(|e| match e.body {
            Body::Refused(r) => Some(r.message),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("token"), "{refused:?}");
    assert_eq!(reader.grant_use_count(&unusable_jti).expect("uses"), 0);
}
