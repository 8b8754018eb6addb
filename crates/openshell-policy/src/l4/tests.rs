use super::*;
use crate::load_str;

fn compile(yaml: &str) -> CompiledPolicy {
    CompiledPolicy::new(load_str(yaml).unwrap().policy)
}

fn request<'a>(
    host: &'a str,
    port: u16,
    binary: &'a str,
    ancestors: &'a [&'a str],
) -> L4Request<'a> {
    L4Request {
        host,
        port,
        binary,
        ancestors,
        cmdline: &[],
        ignore_binary: false,
    }
}

const POLICY: &str = r#"
version: 1
network_policies:
  zeta:
    endpoints:
      - { host: api.github.com, port: 443 }
    binaries: [{ path: /usr/bin/curl }]
  alpha:
    endpoints:
      - { host: api.github.com, ports: [443, 8443], protocol: rest, access: read-only }
      - { host: "*.pypi.org", port: 443 }
    binaries: [{ path: "/usr/bin/*" }]
  node:
    endpoints:
      - { host: "**.npmjs.org", port: 443 }
    binaries: [{ path: /usr/bin/node }]
"#;

#[test]
fn allows_when_endpoint_and_binary_match_in_the_same_entry() {
    let policy = compile(POLICY);
    let decision = policy.decide_l4(&request("api.github.com", 443, "/usr/bin/curl", &[]));
    let L4Decision::Allow(allow) = decision else {
        panic!("expected allow: {decision:?}")
    };
    assert_eq!(allow.policy, "alpha", "smallest key wins");
    let keys: Vec<&str> = allow.matched.iter().map(|m| m.policy).collect();
    assert_eq!(keys, ["alpha", "zeta"]);
    let configs: Vec<&str> = allow.endpoint_configs().map(|m| m.policy).collect();
    assert_eq!(
        configs,
        ["alpha"],
        "only the L7 endpoint carries extended config"
    );
}

#[test]
fn host_matching_is_case_insensitive_and_ignores_trailing_dot() {
    let policy = compile(POLICY);
    assert!(
        policy
            .decide_l4(&request("API.GitHub.com.", 443, "/usr/bin/curl", &[]))
            .is_allowed()
    );
}

#[test]
fn denies_unknown_endpoint_with_reference_reason() {
    let policy = compile(POLICY);
    let L4Decision::Deny(deny) = policy.decide_l4(&request("evil.com", 443, "/usr/bin/curl", &[]))
    else {
        panic!()
    };
    assert_eq!(
        deny.reason,
        "endpoint evil.com:443 is not allowed by any policy"
    );
    let L4Decision::Deny(deny) =
        policy.decide_l4(&request("api.github.com", 80, "/usr/bin/curl", &[]))
    else {
        panic!()
    };
    assert_eq!(
        deny.reason,
        "endpoint api.github.com:80 is not allowed by any policy"
    );
}

#[test]
fn denies_wrong_binary_naming_every_entry_whose_endpoint_matched() {
    let policy = compile(POLICY);
    let decision = policy.decide_l4(&L4Request {
        host: "api.github.com",
        port: 443,
        binary: "/opt/evil",
        ancestors: &["/bin/bash", "/sbin/init"],
        cmdline: &["/tmp/x.py"],
        ignore_binary: false,
    });
    let L4Decision::Deny(deny) = decision else {
        panic!()
    };
    let parts: Vec<&str> = deny.reason.split("; ").collect();
    assert_eq!(parts.len(), 2, "{}", deny.reason);
    assert!(parts[0].starts_with(
        "binary '/opt/evil' not allowed in policy 'alpha' (ancestors: [/bin/bash -> /sbin/init], cmdline: [/tmp/x.py]). SYMLINK HINT:"
    ), "{}", parts[0]);
    assert!(parts[1].starts_with("binary '/opt/evil' not allowed in policy 'zeta'"));
}

#[test]
fn ancestor_binary_grants_access() {
    let policy = compile(POLICY);
    assert!(
        policy
            .decide_l4(&request(
                "registry.npmjs.org",
                443,
                "/bin/sh",
                &["/usr/bin/node"]
            ))
            .is_allowed()
    );
    assert!(
        !policy
            .decide_l4(&request(
                "registry.npmjs.org",
                443,
                "/bin/sh",
                &["/bin/bash"]
            ))
            .is_allowed()
    );
}

#[test]
fn binary_globs_stay_within_one_segment() {
    let policy = compile(POLICY);
    assert!(
        policy
            .decide_l4(&request("files.pypi.org", 443, "/usr/bin/python3", &[]))
            .is_allowed()
    );
    assert!(
        !policy
            .decide_l4(&request("files.pypi.org", 443, "/usr/bin/sub/python3", &[]))
            .is_allowed()
    );
}

#[test]
fn wildcards_follow_label_rules() {
    let policy = compile(POLICY);
    assert!(
        !policy
            .decide_l4(&request("a.b.pypi.org", 443, "/usr/bin/pip", &[]))
            .is_allowed()
    );
    assert!(
        !policy
            .decide_l4(&request("pypi.org", 443, "/usr/bin/pip", &[]))
            .is_allowed()
    );
    assert!(
        policy
            .decide_l4(&request("a.b.npmjs.org", 443, "/usr/bin/node", &[]))
            .is_allowed()
    );
    assert!(
        !policy
            .decide_l4(&request("npmjs.org", 443, "/usr/bin/node", &[]))
            .is_allowed()
    );
}

#[test]
fn empty_network_section_denies_everything() {
    let policy = compile("version: 1\n");
    let L4Decision::Deny(deny) = policy.decide_l4(&request("x.com", 443, "/usr/bin/curl", &[]))
    else {
        panic!()
    };
    assert_eq!(deny.reason, NO_POLICIES_REASON);
}

#[test]
fn any_binary_glob() {
    let policy = compile(
        "version: 1\nnetwork_policies:\n  all:\n    endpoints: [{host: example.com, port: 80}]\n    binaries: [{path: '/**'}]\n",
    );
    assert!(
        policy
            .decide_l4(&request("example.com", 80, "/any/thing/at/all", &[]))
            .is_allowed()
    );
}

#[test]
fn hostless_allowed_ips_endpoint_matches_any_host_on_its_port() {
    let policy = compile(
        "version: 1\nnetwork_policies:\n  lan:\n    endpoints: [{port: 8080, allowed_ips: [10.0.0.0/24]}]\n    binaries: [{path: /usr/bin/curl}]\n",
    );
    let L4Decision::Allow(allow) =
        policy.decide_l4(&request("whatever.lan", 8080, "/usr/bin/curl", &[]))
    else {
        panic!()
    };
    assert_eq!(allow.endpoint_configs().count(), 1);
    assert!(
        !policy
            .decide_l4(&request("whatever.lan", 8081, "/usr/bin/curl", &[]))
            .is_allowed()
    );
}

#[test]
fn garbage_host_is_denied_not_panicking() {
    let policy = compile(POLICY);
    for host in ["", "a b", "\u{0}", &"x".repeat(1000)] {
        assert!(
            !policy
                .decide_l4(&request(host, 443, "/usr/bin/curl", &[]))
                .is_allowed()
        );
    }
}

#[test]
fn relaxed_identity_ignores_binaries() {
    let policy = compile(POLICY);
    let mut relaxed = request("api.github.com", 443, "/opt/evil", &[]);
    relaxed.ignore_binary = true;
    assert!(policy.decide_l4(&relaxed).is_allowed());
}

#[test]
fn destination_mode_follows_reference_precedence() {
    use crate::ssrf::DestinationMode;
    let policy = compile(
        r#"
version: 1
network_policies:
  ips:
    endpoints: [{host: db.internal, port: 5432, allowed_ips: [10.0.0.0/24]}]
    binaries: [{path: /usr/bin/psql}]
  literal:
    endpoints: [{host: 10.1.1.1, port: 80}]
    binaries: [{path: /usr/bin/curl}]
  declared:
    endpoints: [{host: git.corp, port: 443}, {host: "*.git.corp", port: 8443}]
    binaries: [{path: /usr/bin/git}]
"#,
    );
    let mode = |host: &str, port: u16, binary: &str| {
        let L4Decision::Allow(allow) = policy.decide_l4(&request(host, port, binary, &[])) else {
            panic!("{host}")
        };
        match allow.destination_mode(host) {
            DestinationMode::AllowedIps(_) => "allowed_ips",
            DestinationMode::IpLiteral(_) => "ip_literal",
            DestinationMode::DeclaredHost => "declared",
            DestinationMode::PublicOnly => "public",
            DestinationMode::TrustedGateway(_) => "gateway",
        }
    };
    assert_eq!(mode("db.internal", 5432, "/usr/bin/psql"), "allowed_ips");
    assert_eq!(mode("10.1.1.1", 80, "/usr/bin/curl"), "ip_literal");
    assert_eq!(mode("GIT.corp", 443, "/usr/bin/git"), "declared");
    assert_eq!(
        mode("x.git.corp", 8443, "/usr/bin/git"),
        "public",
        "wildcards never unlock internal ranges"
    );
}

#[test]
fn ancestors_false_lets_only_the_caller_itself_match() {
    let policy = compile(
        r#"
version: 1
network_policies:
  git:
    endpoints: [{ host: github.com, port: 443 }]
    binaries: [{ path: /usr/bin/git, ancestors: false }, { path: "/usr/lib/git-core/*" }]
"#,
    );
    // git itself, and a helper matched by its own entry: allowed.
    assert!(
        policy
            .decide_l4(&request("github.com", 443, "/usr/bin/git", &[]))
            .is_allowed()
    );
    assert!(
        policy
            .decide_l4(&request(
                "github.com",
                443,
                "/usr/lib/git-core/git-remote-https",
                &["/usr/bin/git"]
            ))
            .is_allowed()
    );
    // python started by a git alias: git's entry no longer speaks for it.
    assert!(
        !policy
            .decide_l4(&request(
                "github.com",
                443,
                "/usr/bin/python3",
                &["/usr/bin/git"]
            ))
            .is_allowed()
    );
    // The key round-trips; an unknown value type is an error.
    assert!(load_str("version: 1\nnetwork_policies:\n  g:\n    endpoints: [{ host: a.com, port: 1 }]\n    binaries: [{ path: /x, ancestors: maybe }]\n").is_err());
}
