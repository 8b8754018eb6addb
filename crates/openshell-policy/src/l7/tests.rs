use super::*;
use crate::CompiledPolicy;
use crate::l4::{L4Decision, L4Request};
use crate::load_str;

fn compile(yaml: &str) -> CompiledPolicy {
    CompiledPolicy::new(load_str(yaml).unwrap().policy)
}

fn judge(
    policy: &CompiledPolicy,
    host: &str,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
) -> (Verdict, String, Option<String>) {
    let L4Decision::Allow(allow) = policy.decide_l4(&L4Request {
        host,
        port: 443,
        binary: "/usr/bin/curl",
        ancestors: &[],
        cmdline: &[],
        ignore_binary: false,
    }) else {
        panic!("L4 denied")
    };
    let query: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let decision = allow.evaluate_rest(&RestRequest {
        method,
        path,
        query: &query,
    });
    (
        decision.verdict,
        decision.policy.to_owned(),
        decision.reason,
    )
}

fn endpoint_policy(endpoint: &str) -> String {
    format!(
        "version: 1\nnetwork_policies:\n  api:\n    endpoints:\n      - {endpoint}\n    binaries: [{{path: /usr/bin/curl}}]\n"
    )
}

#[test]
fn read_only_preset_allows_get_head_options_only() {
    let policy = compile(&endpoint_policy(
        "{host: api.test, port: 443, protocol: rest, access: read-only}",
    ));
    for method in ["GET", "HEAD", "OPTIONS", "get"] {
        assert_eq!(
            judge(&policy, "api.test", method, "/x", &[]).0,
            Verdict::Allow,
            "{method}"
        );
    }
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let (verdict, key, reason) = judge(&policy, "api.test", method, "/x/y", &[]);
        assert_eq!(verdict, Verdict::Deny, "{method}");
        assert_eq!(key, "api");
        assert_eq!(
            reason.unwrap(),
            format!("{method} /x/y not permitted by policy")
        );
    }
}

#[test]
fn read_write_preset_has_no_delete() {
    let policy = compile(&endpoint_policy(
        "{host: api.test, port: 443, protocol: rest, access: read-write}",
    ));
    for method in ["GET", "POST", "PUT", "PATCH"] {
        assert_eq!(
            judge(&policy, "api.test", method, "/", &[]).0,
            Verdict::Allow,
            "{method}"
        );
    }
    assert_eq!(
        judge(&policy, "api.test", "DELETE", "/", &[]).0,
        Verdict::Deny
    );
}

#[test]
fn full_preset_allows_any_method() {
    let policy = compile(&endpoint_policy(
        "{host: api.test, port: 443, protocol: rest, access: full}",
    ));
    assert_eq!(
        judge(&policy, "api.test", "PROPFIND", "/a/b", &[]).0,
        Verdict::Allow
    );
}

#[test]
fn explicit_rules_with_path_globs_and_get_covering_head() {
    let policy = compile(&endpoint_policy(
        "{host: api.test, port: 443, protocol: rest, rules: [{allow: {method: GET, path: '/repos/*/issues'}}, {allow: {method: POST, path: '/upload/**'}}]}",
    ));
    assert_eq!(
        judge(&policy, "api.test", "GET", "/repos/x/issues", &[]).0,
        Verdict::Allow
    );
    assert_eq!(
        judge(&policy, "api.test", "HEAD", "/repos/x/issues", &[]).0,
        Verdict::Allow
    );
    assert_eq!(
        judge(&policy, "api.test", "GET", "/repos/x/y/issues", &[]).0,
        Verdict::Deny
    );
    assert_eq!(
        judge(&policy, "api.test", "POST", "/upload", &[]).0,
        Verdict::Allow
    );
    assert_eq!(
        judge(&policy, "api.test", "POST", "/upload/a/b", &[]).0,
        Verdict::Allow
    );
    assert_eq!(
        judge(&policy, "api.test", "POST", "/uploads", &[]).0,
        Verdict::Deny
    );
}

#[test]
fn deny_rules_win_within_an_entry() {
    let policy = compile(&endpoint_policy(
        "{host: api.test, port: 443, protocol: rest, access: full, deny_rules: [{method: DELETE, path: '/repos/**'}]}",
    ));
    let (verdict, _, reason) = judge(&policy, "api.test", "DELETE", "/repos/a", &[]);
    assert_eq!(verdict, Verdict::Deny);
    assert_eq!(reason.unwrap(), "DELETE /repos/a blocked by deny rule");
    assert_eq!(
        judge(&policy, "api.test", "DELETE", "/other", &[]).0,
        Verdict::Allow
    );
}

#[test]
fn deny_rules_win_across_entries() {
    let policy = compile(
        r#"
version: 1
network_policies:
  a_allow_all:
    endpoints: [{host: api.test, port: 443, protocol: rest, access: full}]
    binaries: [{path: /usr/bin/curl}]
  b_deny_admin:
    endpoints:
      - host: api.test
        port: 443
        protocol: rest
        access: read-only
        deny_rules: [{method: "*", path: "/admin/**"}]
    binaries: [{path: /usr/bin/curl}]
"#,
    );
    assert_eq!(
        judge(&policy, "api.test", "POST", "/x", &[]).0,
        Verdict::Allow
    );
    let (verdict, _, reason) = judge(&policy, "api.test", "GET", "/admin/users", &[]);
    assert_eq!(verdict, Verdict::Deny);
    assert_eq!(reason.unwrap(), "GET /admin/users blocked by deny rule");
}

#[test]
fn audit_mode_forwards_but_labels() {
    let policy = compile(&endpoint_policy(
        "{host: api.test, port: 443, protocol: rest, enforcement: audit, access: read-only}",
    ));
    let (verdict, _, reason) = judge(&policy, "api.test", "POST", "/x", &[]);
    assert_eq!(verdict, Verdict::Audit);
    assert_eq!(reason.unwrap(), "POST /x not permitted by policy");
    assert_eq!(
        judge(&policy, "api.test", "GET", "/x", &[]).0,
        Verdict::Allow
    );
}

#[test]
fn enforcement_defaults_to_enforce() {
    let policy = compile(&endpoint_policy(
        "{host: api.test, port: 443, protocol: rest, access: read-only}",
    ));
    assert_eq!(
        judge(&policy, "api.test", "POST", "/x", &[]).0,
        Verdict::Deny
    );
}

#[test]
fn query_matchers_allow_side_requires_every_value() {
    let policy = compile(&endpoint_policy(
        "{host: api.test, port: 443, protocol: rest, rules: [{allow: {method: GET, path: /search, query: {q: 'ok*', tag: {any: [a, b]}}}}]}",
    ));
    let allow = |q: &[(&str, &str)]| judge(&policy, "api.test", "GET", "/search", q).0;
    assert_eq!(allow(&[("q", "okay"), ("tag", "a")]), Verdict::Allow);
    assert_eq!(
        allow(&[("q", "okay"), ("tag", "a"), ("extra", "z")]),
        Verdict::Allow,
        "unconfigured keys ignored"
    );
    assert_eq!(
        allow(&[("q", "okay"), ("tag", "a"), ("tag", "c")]),
        Verdict::Deny,
        "every value must match"
    );
    assert_eq!(
        allow(&[("q", "okay")]),
        Verdict::Deny,
        "configured key must be present"
    );
    assert_eq!(
        allow(&[("q", "OKAY"), ("tag", "a")]),
        Verdict::Deny,
        "case-sensitive"
    );
}

#[test]
fn query_matchers_deny_side_needs_one_value() {
    let policy = compile(&endpoint_policy(
        "{host: api.test, port: 443, protocol: rest, access: full, deny_rules: [{method: GET, path: /s, query: {force: 'true'}}]}",
    ));
    let verdict = |q: &[(&str, &str)]| judge(&policy, "api.test", "GET", "/s", q).0;
    assert_eq!(
        verdict(&[("force", "false"), ("force", "true")]),
        Verdict::Deny
    );
    assert_eq!(verdict(&[("force", "false")]), Verdict::Allow);
    assert_eq!(
        verdict(&[]),
        Verdict::Allow,
        "deny with query needs the key present"
    );
}

#[test]
fn most_specific_endpoint_path_selects_the_config() {
    let policy = compile(
        r#"
version: 1
network_policies:
  broad:
    endpoints: [{host: api.test, port: 443, protocol: rest, enforcement: audit, access: read-only}]
    binaries: [{path: /usr/bin/curl}]
  narrow:
    endpoints: [{host: api.test, port: 443, path: "/graphql", protocol: rest, access: read-only}]
    binaries: [{path: /usr/bin/curl}]
"#,
    );
    let (verdict, key, _) = judge(&policy, "api.test", "POST", "/graphql", &[]);
    assert_eq!((verdict, key.as_str()), (Verdict::Deny, "narrow"));
    let (verdict, key, _) = judge(&policy, "api.test", "POST", "/other", &[]);
    assert_eq!((verdict, key.as_str()), (Verdict::Audit, "broad"));
}

#[test]
fn no_selector_match_is_a_deny() {
    let policy = compile(&endpoint_policy(
        "{host: api.test, port: 443, path: '/v1/**', protocol: rest, access: full}",
    ));
    let (verdict, _, reason) = judge(&policy, "api.test", "GET", "/v2/x", &[]);
    assert_eq!(verdict, Verdict::Deny);
    assert_eq!(reason.as_deref(), Some(NO_PATH_MATCH_REASON));
    assert_eq!(
        judge(&policy, "api.test", "GET", "/v1", &[]).0,
        Verdict::Allow
    );
}

#[test]
fn l4_only_endpoints_do_not_inspect() {
    let policy = compile(&endpoint_policy("{host: api.test, port: 443}"));
    assert_eq!(
        judge(&policy, "api.test", "DELETE", "/x", &[]).0,
        Verdict::Allow
    );
}

#[test]
fn non_rest_inspected_endpoints_never_fall_open() {
    for fields in [
        "protocol: graphql, access: read-only",
        "protocol: mcp, rules: [{allow: {method: tools/call, tool: read_file}}]",
        "protocol: json-rpc, rules: [{allow: {method: eth_call}}]",
    ] {
        let policy = compile(&endpoint_policy(&format!(
            "{{host: api.test, port: 443, {fields}}}"
        )));
        let (verdict, _, reason) = judge(&policy, "api.test", "POST", "/anything", &[]);
        assert_eq!(verdict, Verdict::Deny, "{fields}");
        assert_eq!(reason.as_deref(), Some(NO_PATH_MATCH_REASON), "{fields}");
    }
}
