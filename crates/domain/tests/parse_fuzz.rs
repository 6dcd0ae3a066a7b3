//! Untrusted procedure files never panic the parser: random bytes, random YAML-ish text, and
//! random mutations of a valid file all end in `Ok` or an error naming a position.

use breakglass_domain::{Limits, parse_procedures};
use proptest::prelude::*;

const VALID: &str = "id: root-db\ntarget:\n  kind: secret\ncustodians:\n  - name: alice\n    key: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n  - name: bob\n    key: age16x89adflfx7u83grlza8l35h0rymue2ygl9rev5dj0366yyescls7khghf\nquorum: 2\nmax_grant: 15m\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = parse_procedures("f.yaml", &text, &Limits::default());
    }

    #[test]
    fn mutated_valid_file_never_panics(pos in 0usize..VALID.len(), byte in any::<u8>(), cut in 0usize..VALID.len()) {
        let mut bytes = VALID.as_bytes().to_vec();
        bytes[pos] = byte;
        bytes.truncate(cut.max(1));
        let text = String::from_utf8_lossy(&bytes);
        if let Err(errors) = parse_procedures("f.yaml", &text, &Limits::default()) {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert_eq!(e.file.as_str(), "f.yaml");
                prop_assert!(!e.field.is_empty());
            }
        }
    }

    #[test]
    fn yaml_shaped_noise_never_panics(lines in proptest::collection::vec("[a-z_]{0,8}: ?[-\\[\\]{}a-z0-9 ,:&*!|>]{0,20}", 0..20)) {
        let text = lines.join("\n");
        let _ = parse_procedures("f.yaml", &text, &Limits::default());
    }
}
