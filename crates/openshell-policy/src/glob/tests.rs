use super::*;

fn path(pattern: &str) -> Glob {
    Glob::new(pattern, Syntax::Path).unwrap()
}

fn host(pattern: &str) -> Glob {
    Glob::new(pattern, Syntax::Host).unwrap()
}

fn text(pattern: &str) -> Glob {
    Glob::new(pattern, Syntax::Text).unwrap()
}

#[test]
fn path_star_stays_within_one_segment() {
    let glob = path("/usr/bin/*");
    assert!(glob.matches("/usr/bin/node"));
    assert!(glob.matches("/usr/bin/"));
    assert!(!glob.matches("/usr/bin/sub/node"));
    assert!(!glob.matches("/usr/bin"));
    assert!(path("/repos/*/issues").matches("/repos/x/issues"));
    assert!(!path("/repos/*/issues").matches("/repos/x/y/issues"));
}

#[test]
fn path_globstar_spans_zero_or_more_segments() {
    let glob = path("/a/**/b");
    for input in ["/a/b", "/a/x/b", "/a/x/y/b"] {
        assert!(glob.matches(input), "{input}");
    }
    for input in ["/a/xb", "/ab", "/a/b/c"] {
        assert!(!glob.matches(input), "{input}");
    }
}

#[test]
fn trailing_globstar_matches_directory_and_subtree() {
    let glob = path("/sandbox/.vscode-server/**");
    for input in [
        "/sandbox/.vscode-server",
        "/sandbox/.vscode-server/",
        "/sandbox/.vscode-server/bin/node",
    ] {
        assert!(glob.matches(input), "{input}");
    }
    assert!(!glob.matches("/sandbox/.vscode-serverX/node"));
    assert!(!glob.matches("/sandbox"));
}

#[test]
fn root_globstar_matches_every_absolute_path() {
    let glob = path("/**");
    assert!(glob.matches("/usr/bin/curl"));
    assert!(glob.matches("/"));
    assert!(path("**").matches("/anything/at/all"));
}

#[test]
fn leading_globstar_segment() {
    let glob = path("**/node");
    assert!(glob.matches("node"));
    assert!(glob.matches("/usr/bin/node"));
    assert!(!glob.matches("/usr/bin/nodejs"));
}

#[test]
fn path_globstar_inside_a_segment_is_rejected() {
    for pattern in ["/api/v1**", "/a/**b", "/a**/b"] {
        assert_eq!(
            Glob::new(pattern, Syntax::Path),
            Err(GlobError::PathGlobStar(pattern.to_owned())),
            "{pattern}"
        );
    }
}

#[test]
fn host_star_stays_within_one_label_and_is_never_empty() {
    let glob = host("*.example.com");
    assert!(glob.matches("api.example.com"));
    assert!(!glob.matches("a.b.example.com"));
    assert!(!glob.matches("example.com"));
    assert!(!glob.matches(".example.com"));
}

#[test]
fn host_globstar_needs_at_least_one_label() {
    let glob = host("**.example.com");
    assert!(glob.matches("api.example.com"));
    assert!(glob.matches("a.b.example.com"));
    assert!(!glob.matches("example.com"));
    assert!(!glob.matches("badexample.com"));
}

#[test]
fn host_wildcard_inside_first_label_and_middle_label() {
    assert!(host("*-aiplatform.googleapis.com").matches("us-aiplatform.googleapis.com"));
    assert!(!host("*-aiplatform.googleapis.com").matches("a.us-aiplatform.googleapis.com"));
    let glob = host("*.s3.*.amazonaws.com");
    assert!(glob.matches("bucket.s3.us-east-1.amazonaws.com"));
    assert!(!glob.matches("bucket.s3.a.b.amazonaws.com"));
}

#[test]
fn host_globstar_elsewhere_is_rejected() {
    for pattern in ["foo.**.example.com", "foo**.example.com", "**x.example.com"] {
        assert!(
            matches!(
                Glob::new(pattern, Syntax::Host),
                Err(GlobError::HostGlobStar(_))
            ),
            "{pattern}"
        );
    }
}

#[test]
fn text_star_matches_any_run_including_dots_and_slashes() {
    assert!(text("1.*").matches("1.2.3"));
    assert!(text("a*").matches("a/b.c"));
    assert!(text("**").matches("anything"));
    assert!(!text("a*").matches("ba"));
}

#[test]
fn classes_alternatives_question_and_escapes() {
    assert!(text("v[0-9]").matches("v7"));
    assert!(!text("v[!0-9]").matches("v7"));
    assert!(text("v[^0-9]").matches("vx"));
    assert!(text("{main,dev}-*").matches("dev-1"));
    assert!(!text("{main,dev}-*").matches("prod-1"));
    assert!(text("a{b,{c,d}}e").matches("ade"));
    assert!(text("a?c").matches("abc"));
    assert!(
        !path("/a?c").matches("/a/c"),
        "`?` never matches the delimiter"
    );
    assert!(text(r"\*").matches("*"));
    assert!(!text(r"\*").matches("x"));
    assert!(text("[]x]").matches("]"));
}

#[test]
fn malformed_patterns_are_errors() {
    assert!(matches!(
        Glob::new("[abc", Syntax::Text),
        Err(GlobError::UnclosedClass(_))
    ));
    assert!(matches!(
        Glob::new("{a,b", Syntax::Text),
        Err(GlobError::UnbalancedBraces(_))
    ));
    assert!(matches!(
        Glob::new("a}", Syntax::Text),
        Err(GlobError::UnbalancedBraces(_))
    ));
    assert!(matches!(
        Glob::new("a\\", Syntax::Text),
        Err(GlobError::TrailingEscape(_))
    ));
    let bomb = "{a,b}".repeat(8);
    assert!(matches!(
        Glob::new(&bomb, Syntax::Text),
        Err(GlobError::TooManyAlternatives(_))
    ));
    assert_eq!(
        Glob::new(&"a".repeat(MAX_PATTERN_BYTES + 1), Syntax::Text),
        Err(GlobError::TooLong)
    );
}

#[test]
fn literal_patterns_compare_exactly() {
    let glob = path("/usr/bin/curl");
    assert!(glob.is_literal());
    assert!(glob.matches("/usr/bin/curl"));
    assert!(!glob.matches("/usr/bin/curl2"));
}

#[test]
fn long_patterns_use_more_than_one_word_of_state() {
    let pattern = format!("/{}/*", "a".repeat(300));
    let glob = path(&pattern);
    assert!(glob.matches(&format!("/{}/x", "a".repeat(300))));
    assert!(!glob.matches(&format!("/{}/x/y", "a".repeat(300))));
}

#[test]
fn many_stars_do_not_backtrack_exponentially() {
    let glob = text(&"a*".repeat(40));
    let input = "a".repeat(5000) + "b";
    assert!(glob.matches(&input));
    assert!(!text(&("a*".repeat(40) + "c")).matches(&input));
}

#[test]
fn specificity_counts_non_star_characters() {
    assert_eq!(path("/repos/**").specificity(), 7);
    assert_eq!(path("**").specificity(), 0);
}

#[test]
fn optional_literals_are_not_required_by_the_prefilter() {
    assert!(path("**/node").matches("node"));
    assert!(path("/a/**").matches("/a"));
    assert!(path("/a/**/b").matches("/a/b"));
    assert!(
        text("{ab,b}").matches("b"),
        "alternatives share only their common suffix"
    );
    assert!(!text("{xa,ya}").matches("b"));
}
