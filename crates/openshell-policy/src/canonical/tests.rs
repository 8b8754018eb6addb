use proptest::prelude::*;

use super::*;

fn path(target: &str) -> String {
    canonicalize_target(target, false).unwrap().path
}

#[test]
fn canonical_forms() {
    let table = [
        ("/", "/"),
        ("//", "/"),
        ("/a//b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/b/../c", "/a/c"),
        ("/a/b/..", "/a/"),
        ("/a/.", "/a/"),
        ("/a/..", "/"),
        ("/a/b/", "/a/b/"),
        ("/%41%62c", "/Abc"),
        ("/a%2e%2E/x", "/a../x"),
        ("/a/%2e%2e/b", "/b"),
        ("/a%20b", "/a%20b"),
        ("/a%3fb", "/a%3Fb"),
        ("/a;jsessionid=1/b;x", "/a/b"),
        ("/repos/o/r/issues?state=open", "/repos/o/r/issues"),
        ("/~user/-_.", "/~user/-_."),
    ];
    for (input, expected) in table {
        assert_eq!(path(input), expected, "{input}");
    }
}

#[test]
fn refusals() {
    let table = [
        ("/../etc/passwd", CanonicalizeError::EscapesRoot),
        ("/a/../../b", CanonicalizeError::EscapesRoot),
        ("/%2e%2e/x", CanonicalizeError::EscapesRoot),
        ("/a%2Fb", CanonicalizeError::EncodedSlash),
        ("/a%2fb", CanonicalizeError::EncodedSlash),
        ("/a\u{1}b", CanonicalizeError::ControlByte),
        ("/a b", CanonicalizeError::ControlByte),
        ("/a%00b", CanonicalizeError::ControlByte),
        ("/a%0d%0aHost:x", CanonicalizeError::ControlByte),
        ("/a%7f", CanonicalizeError::ControlByte),
        ("/é", CanonicalizeError::NonAscii),
        ("/a#frag", CanonicalizeError::Fragment),
        ("*", CanonicalizeError::NotOriginForm),
        ("http://h/x", CanonicalizeError::NotOriginForm),
        ("", CanonicalizeError::NotOriginForm),
        ("/a%zz", CanonicalizeError::InvalidEscape),
        ("/a%4", CanonicalizeError::InvalidEscape),
    ];
    for (input, expected) in table {
        assert_eq!(
            canonicalize_target(input, false),
            Err(expected.clone()),
            "{input:?}"
        );
    }
    let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
    assert_eq!(
        canonicalize_target(&long, false),
        Err(CanonicalizeError::TooLong(MAX_PATH_BYTES + 1))
    );
}

#[test]
fn encoded_slash_kept_when_allowed() {
    let target = canonicalize_target("/pkg/%2f/x", true).unwrap();
    assert_eq!(target.path, "/pkg/%2F/x");
}

#[test]
fn query_is_split_and_decoded() {
    let target = canonicalize_target("/s?q=a+b&tag=x%2Fy&tag=z&flag", false).unwrap();
    assert_eq!(
        target.raw_query.as_deref(),
        Some("q=a+b&tag=x%2Fy&tag=z&flag")
    );
    assert_eq!(
        target.query,
        vec![
            ("q".into(), "a b".into()),
            ("tag".into(), "x/y".into()),
            ("tag".into(), "z".into()),
            ("flag".into(), "".into()),
        ]
    );
    assert_eq!(canonicalize_target("/s", false).unwrap().raw_query, None);
}

fn target_strategy() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e%2E".to_string()),
        Just("%2F".to_string()),
        Just("a;b=c".to_string()),
        "[a-zA-Z0-9._~%-]{0,6}",
        "%[0-9a-fA-F]{2}",
    ];
    prop::collection::vec(segment, 0..12).prop_map(|segments| format!("/{}", segments.join("/")))
}

proptest! {
    #[test]
    fn canonicalization_is_idempotent(target in target_strategy(), allow in any::<bool>()) {
        if let Ok(first) = canonicalize_target(&target, allow) {
            let second = canonicalize_target(&first.path, allow).unwrap();
            prop_assert_eq!(&second.path, &first.path);
        }
    }

    #[test]
    fn canonical_path_has_no_dot_segments_or_double_slash(target in target_strategy(), allow in any::<bool>()) {
        if let Ok(canonical) = canonicalize_target(&target, allow) {
            let path = canonical.path;
            prop_assert!(path.starts_with('/'));
            prop_assert!(!path.contains("//"), "{}", path);
            prop_assert!(!path.split('/').any(|s| s == ".." || s == "."), "{}", path);
            prop_assert!(!path.contains(';'), "{}", path);
            prop_assert!(!path.to_ascii_lowercase().contains("%2e"), "{}", path);
            if !allow {
                prop_assert!(!path.to_ascii_uppercase().contains("%2F"), "{}", path);
            }
        }
    }

    #[test]
    fn arbitrary_input_never_panics(target in "\\PC{0,64}") {
        let _ = canonicalize_target(&target, false);
    }
}
