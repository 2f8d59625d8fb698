//! Every detector: true positives, false positives, text around matches.

use super::{all_detectors, check, mask, mask_bytes, with_detectors};
use crate::mask::Detector;

#[test]
fn card_numbers() {
    let m = with_detectors(&[Detector::CardNumber]);
    check(
        &m,
        &[
            ("4111111111111111", Some("****")),
            (
                "card 4111 1111 1111 1111 exp 12/27",
                Some("card **** exp 12/27"),
            ),
            ("4111-1111-1111-1111", Some("****")),
            ("amex 378282246310005.", Some("amex ****.")),
            ("mc=5555555555554444;", Some("mc=****;")),
            ("6011111111111117", Some("****")),
            ("jcb 3530111333300000", Some("jcb ****")),
            ("diners 30569309025904", Some("diners ****")),
            ("ref 12 4111 1111 1111 1111", Some("ref 12 ****")),
            (
                "Karte: 4111 1111 1111 1111 — danke ✓",
                Some("Karte: **** — danke ✓"),
            ),
            ("カード4111111111111111です", Some("カード****です")),
            // Fails Luhn.
            ("4111111111111112", None),
            ("order 4111 1111 1111 1112", None),
            // Passes Luhn, but no issuer starts with 1 or 9.
            ("order 1234567890123452", None),
            ("9111111111111111", None),
            // Glued to letters, too short, too long.
            ("ID4111111111111111", None),
            ("4111111111111111x", None),
            ("411111111111", None),
            ("41111111111111111111111", None),
            // Ordinary data.
            ("2024-03-15 12:34:56.789012+00", None),
            ("550e8400-e29b-41d4-a716-446655440000", None),
            ("amount 1234567.89 EUR", None),
            ("1712345678901", None),
            ("ISBN 978-3-16-148410-0", None),
        ],
    );
}

#[test]
fn emails() {
    let m = with_detectors(&[Detector::Email]);
    check(
        &m,
        &[
            ("user@example.com", Some("****")),
            ("a@b.co", Some("****")),
            (
                "Contact: Jane <jane.doe+tag@mail.example.co.uk>, thanks",
                Some("Contact: Jane <****>, thanks"),
            ),
            ("write to user@example.com.", Some("write to ****.")),
            ("git@github.com:org/repo.git", Some("****:org/repo.git")),
            ("Grüße an müller@example.de!", Some("Grüße an ****!")),
            ("a@x.io and b@y.io", Some("**** and ****")),
            ("mailto:ops@corp.example", Some("mailto:****")),
            // No dotted domain, a one-letter or numeric top level, no local part.
            ("foo@bar", None),
            ("a@b.c", None),
            ("x = user@localhost", None),
            ("npm i pkg@1.2.3", None),
            ("@Override public void run()", None),
            ("@@ -1,4 +1,5 @@", None),
            ("see icon@2x.png", None),
            (".@example.com", None),
        ],
    );
}

#[test]
fn us_ssns() {
    let m = with_detectors(&[Detector::UsSsn]);
    check(
        &m,
        &[
            ("123-45-6789", Some("****")),
            ("SSN: 123 45 6789.", Some("SSN: ****.")),
            ("ssn=078-05-1120;", Some("ssn=****;")),
            // Invalid area, group or serial.
            ("000-12-3456", None),
            ("666-12-3456", None),
            ("900-12-3456", None),
            ("123-00-4567", None),
            ("123-45-0000", None),
            // Bare, mixed separators, longer chains, glued.
            ("123456789", None),
            ("123-45 6789", None),
            ("1123-45-6789", None),
            ("123-45-67890", None),
            ("555-123-45-6789", None),
            ("A123-45-6789", None),
            ("2024-03-15", None),
        ],
    );
}

#[test]
fn ibans() {
    let m = with_detectors(&[Detector::Iban]);
    check(
        &m,
        &[
            ("GB82 WEST 1234 5698 7654 32", Some("****")),
            ("DE89370400440532013000", Some("****")),
            ("IBAN: FR1420041010050500013M02606.", Some("IBAN: ****.")),
            ("pay NL91ABNA0417164300 today", Some("pay **** today")),
            // Bad checksum.
            ("GB82 WEST 1234 5698 7654 33", None),
            ("DE89370400440532013001", None),
            // Unknown country, wrong length, glued, lower case, ordinary text.
            ("ZZ89370400440532013000", None),
            ("DE8937040044053201300", None),
            ("XDE89370400440532013000", None),
            ("de89370400440532013000", None),
            ("ISO8601 and RFC3339", None),
        ],
    );
}

#[test]
fn phones() {
    let m = with_detectors(&[Detector::Phone]);
    check(
        &m,
        &[
            ("+1 (415) 555-2671", Some("****")),
            ("call (415) 555-2671 now", Some("call **** now")),
            ("415-555-2671", Some("****")),
            ("415.555.2671", Some("****")),
            ("tel: 415 555 2671", Some("tel: ****")),
            ("1-800-555-0199", Some("****")),
            ("+44 20 7946 0958", Some("****")),
            ("+44 (0)20 7946 0958", Some("****")),
            ("+4915123456789", Some("****")),
            ("Телефон: +7 495 123-45-67.", Some("Телефон: ****.")),
            // Conservative: bare digits, local numbers, invalid NANP.
            ("4155552671", None),
            ("555-2671", None),
            ("123-456-7890", None),
            ("415-055-2671", None),
            ("415-555-26710", None),
            ("+12", None),
            ("+1234567890123456", None),
            ("x+14155552671", None),
            ("2024-03-15 12:34:56", None),
            ("version 1.2.3.4", None),
        ],
    );
}

#[test]
fn cloud_keys() {
    let azure_key = format!("{}==", "A".repeat(43) + &"b9+/".repeat(11));
    let azure = format!(
        "DefaultEndpointsProtocol=https;AccountName=x;AccountKey={azure_key};EndpointSuffix=core.windows.net"
    );
    let azure_masked = "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=****;EndpointSuffix=core.windows.net";
    let m = all_detectors();
    check(
        &m,
        &[
            ("AKIAIOSFODNN7EXAMPLE", Some("****")),
            ("key=AKIAIOSFODNN7EXAMPLE;", Some("key=****;")),
            ("ASIAY34FZKBOKMUTVV7A", Some("****")),
            ("AKIAIOSFODNN7EXAMPL", None),
            ("XAKIAIOSFODNN7EXAMPLE", None),
            ("AKIAIOSFODNN7EXAMPLEX", None),
            ("akiaiosfodnn7example", None),
            ("ASIA is a continent", None),
            (
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                Some("aws_secret_access_key = ****"),
            ),
            (
                r#"{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}"#,
                Some(r#"{"SecretAccessKey": "****"}"#),
            ),
            // Without its name a 40-character string is not a secret.
            ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None),
            ("AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI", Some("****")),
            ("key AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKq", None),
            (&azure, Some(azure_masked)),
            ("AccountKey=short;", None),
        ],
    );
}

#[test]
fn tokens() {
    let ghp = format!("ghp_{}", "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6");
    let pat = format!("github_pat_11ABCDEFG0{}", "x1_Y".repeat(20));
    let m = all_detectors();
    check(
        &m,
        &[
            (&ghp, Some("****")),
            (
                &format!("export GITHUB_TOKEN={ghp}\n"),
                Some("export GITHUB_TOKEN=****\n"),
            ),
            (&pat, Some("****")),
            ("token ghp_short", None),
            ("my_ghp_aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6", None),
            ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", Some("****")),
            (
                "stripe: rk_test_4eC39HqLyjWDarjtT1zdp7dc.",
                Some("stripe: ****."),
            ),
            ("sk_live_", None),
            ("pk_live_4eC39HqLyjWDarjtT1zdp7dc", None),
            (
                "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
                Some("****"),
            ),
            ("xapp-1-A0123456789-0123456789012-abcdef", Some("****")),
            ("xoxb-", None),
            ("xoxo, gossip girl", None),
        ],
    );
}

#[test]
fn jwts() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    let m = with_detectors(&[Detector::Jwt]);
    check(
        &m,
        &[
            (jwt, Some("****")),
            (
                &format!("Authorization: Bearer {jwt}"),
                Some("Authorization: Bearer ****"),
            ),
            (&format!("[\"{jwt}\"]"), Some("[\"****\"]")),
            // Unsigned JWTs still carry claims.
            ("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", Some("****")),
            ("eyJhbGciOiJIUzI1NiJ9", None),
            ("eyJhbGciOiJIUzI1NiJ9.notjson.sig", None),
            ("heyJude", None),
        ],
    );
}

#[test]
fn pem_private_keys() {
    let block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n-----END RSA PRIVATE KEY-----";
    let m = all_detectors();
    check(
        &m,
        &[
            (block, Some("****")),
            (&format!("key:\n{block}\ndone"), Some("key:\n****\ndone")),
            (&block.replace('\n', "\r\n"), Some("****")),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
                Some("****\n"),
            ),
            // Cut off: masked to the end of the value.
            (
                "id: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
                Some("id: ****"),
            ),
            // Public material stays.
            (
                "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----",
                None,
            ),
            (
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
                None,
            ),
        ],
    );
}

#[test]
fn clean_values_are_untouched() {
    let m = all_detectors();
    for value in [
        "",
        "Hello, world",
        "42",
        "-1234.56",
        "2024-03-15 12:34:56.789012+00",
        "550e8400-e29b-41d4-a716-446655440000",
        "The quick brown fox jumps over the lazy dog near the riverbank.",
        "Ωμέγα — 日本語のテキスト — emoji 🎉",
        "SELECT * FROM users WHERE id = 12345 AND created_at > '2024-01-01'",
        "{\"id\": 981273, \"status\": \"shipped\", \"total\": 129.99}",
        "192.168.1.254:5432",
        "Order #1234567890123452 shipped",
    ] {
        assert_eq!(mask(&m, value), None, "{value:?}");
    }
}

#[test]
fn non_utf8_values_are_scanned_as_bytes() {
    let m = all_detectors();
    let value = b"\xff\xfe user@example.com \xc3(";
    assert_eq!(
        mask_bytes(&m, value).as_deref(),
        Some(&b"\xff\xfe **** \xc3("[..])
    );
    assert_eq!(mask_bytes(&m, b"\x00\x01\xff\x80 nothing"), None);
}

#[test]
fn several_matches_keep_the_text_between() {
    let m = all_detectors();
    let text = "From: ann@example.com, card 4111 1111 1111 1111, cc bob@example.org";
    let mut out = Vec::new();
    let outcome = m.mask_value(text.as_bytes(), &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "From: ****, card ****, cc ****"
    );
    let named: Vec<_> = outcome
        .hits()
        .iter()
        .map(|(rule, n)| (m.rule_name(rule), n))
        .collect();
    assert!(named.contains(&("detector:email", 2)), "{named:?}");
    assert!(named.contains(&("detector:card_number", 1)), "{named:?}");
    assert_eq!(outcome.hits().total(), 3);
    assert!(!outcome.nulled());
}

#[test]
fn hostile_input_stays_linear() {
    let m = all_detectors();
    // Many keyword hits that fail validation, digits, at signs.
    let mut value = Vec::new();
    for _ in 0..20_000 {
        value.extend_from_slice(b"xoxb-");
    }
    value.extend_from_slice(&[b'7'; 100_000]);
    value.extend_from_slice(&b"a@".repeat(50_000));
    value.extend_from_slice(&b"-----BEGIN ".repeat(10_000));
    // Must finish; on a quadratic path this takes minutes.
    let _ = m.mask_value(&value, &mut Vec::new());
}
