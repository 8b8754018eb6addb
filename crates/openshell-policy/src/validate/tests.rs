use crate::load::{LoadPolicyError, load_str};
use crate::policy::{Enforcement, Identity, LandlockCompatibility, MethodMatcher, TlsMode};
use crate::yaml::Location;

fn errors(yaml: &str) -> Vec<String> {
    match load_str(yaml) {
        Err(LoadPolicyError::Invalid(errors)) => errors.iter().map(|e| e.to_string()).collect(),
        Err(other) => vec![format!("PARSE: {other}")],
        Ok(_) => Vec::new(),
    }
}

fn warnings(yaml: &str) -> Vec<String> {
    load_str(yaml)
        .unwrap()
        .warnings
        .iter()
        .map(|w| w.to_string())
        .collect()
}

fn endpoint(fields: &str) -> String {
    format!(
        "version: 1\nnetwork_policies:\n  p:\n    endpoints:\n      - {{{fields}}}\n    binaries: [{{path: /usr/bin/curl}}]\n"
    )
}

fn assert_error(yaml: &str, expected: &str) {
    let found = errors(yaml);
    assert!(
        found.iter().any(|e| e.contains(expected)),
        "expected an error containing {expected:?}, got {found:#?}\nfor:\n{yaml}"
    );
}

#[test]
fn version_is_required_and_must_be_one() {
    match load_str("network_policies: {}\n") {
        Err(LoadPolicyError::Parse(d)) => assert_eq!(d.message, "missing field `version`"),
        other => panic!("{other:?}"),
    }
    assert_error(
        "version: 2\n",
        "version: unsupported policy version 2 (expected 1)",
    );
}

#[test]
fn unknown_keys_are_errors_with_location() {
    let yaml = "version: 1\nnetwork_policies:\n  p:\n    endpoints:\n      - host: a.com\n        prot: 443\n    binaries: [{path: /x}]\n";
    match load_str(yaml) {
        Err(LoadPolicyError::Parse(d)) => {
            assert!(d.message.starts_with("unknown field `prot`"), "{d}");
            assert_eq!(d.path.to_string(), "network_policies.p.endpoints[0].prot");
            assert_eq!(d.location, Some(Location { line: 6, column: 9 }));
        }
        other => panic!("{other:?}"),
    }
    for section in [
        "filesystem_policy: {nope: 1}",
        "landlock: {nope: 1}",
        "process: {nope: 1}",
        "nope: 1",
    ] {
        let found = errors(&format!("version: 1\n{section}\n"));
        assert!(
            found[0].contains("unknown field `nope`"),
            "{section}: {found:?}"
        );
    }
}

#[test]
fn internal_only_fields_are_not_authorable() {
    for field in ["provider_credentialed: true", "advisor_proposed: true"] {
        let found = errors(&endpoint(&format!("host: a.com, port: 443, {field}")));
        assert!(found[0].contains("unknown field"), "{field}: {found:?}");
    }
}

#[test]
fn filesystem_rules_of_reference_1_3() {
    let long = format!("/{}", "a".repeat(4100));
    let cases = [
        (
            "read_only: [relative/path]",
            "path must be absolute (start with '/'): relative/path".to_owned(),
        ),
        (
            "read_only: [/usr/../etc]",
            "path contains '..' traversal component: /usr/../etc".to_owned(),
        ),
        (
            "read_write: [/]",
            "read-write path is overly broad: /".to_owned(),
        ),
        (
            "read_write: [//]",
            "read-write path is overly broad: //".to_owned(),
        ),
        (
            &*format!("read_only: [{long}]"),
            format!("path exceeds maximum length (4101 > 4096): {}", &long[..80]),
        ),
    ];
    for (section, message) in cases {
        assert_error(
            &format!("version: 1\nfilesystem_policy:\n  {section}\n"),
            &message,
        );
    }
    assert!(
        errors("version: 1\nfilesystem_policy: {read_only: [/]}\n").is_empty(),
        "/ is allowed read-only"
    );
    let many: Vec<String> = (0..257).map(|i| format!("/p{i}")).collect();
    assert_error(
        &format!(
            "version: 1\nfilesystem_policy:\n  read_only: [{}]\n",
            many.join(", ")
        ),
        "too many filesystem paths (257 > 256)",
    );
}

#[test]
fn filesystem_paths_are_normalised_and_workdir_defaults_true() {
    let policy = load_str("version: 1\nfilesystem_policy:\n  read_only: [/usr//lib/, /usr/lib]\n")
        .unwrap()
        .policy;
    assert_eq!(policy.filesystem.read_only, ["/usr/lib"]);
    assert!(
        policy.filesystem.include_workdir,
        "decision 3: true even when the section is present"
    );
    assert!(
        load_str("version: 1\n")
            .unwrap()
            .policy
            .filesystem
            .include_workdir
    );
    let off = load_str("version: 1\nfilesystem_policy: {include_workdir: false}\n")
        .unwrap()
        .policy;
    assert!(!off.filesystem.include_workdir);
}

#[test]
fn landlock_compatibility_is_strict() {
    let hard = load_str("version: 1\nlandlock: {compatibility: hard_requirement}\n")
        .unwrap()
        .policy;
    assert_eq!(hard.landlock, LandlockCompatibility::HardRequirement);
    assert_error(
        "version: 1\nlandlock: {compatibility: hard-requirement}\n",
        "unknown landlock compatibility 'hard-requirement' (expected best_effort or hard_requirement)",
    );
}

#[test]
fn process_identity_rules_of_reference_1_5() {
    let policy = load_str("version: 1\nprocess: {run_as_user: sandbox, run_as_group: 1000}\n")
        .unwrap()
        .policy;
    assert_eq!(policy.process.run_as_user, Some(Identity::Sandbox));
    assert_eq!(policy.process.run_as_group, Some(Identity::Id(1000)));
    for value in ["0", "4294967295", "root", "nobody", "-1", "01000"] {
        assert_error(
            &format!("version: 1\nprocess: {{run_as_user: '{value}'}}\n"),
            &format!(
                "run_as_user must be 'sandbox' or a numeric UID/GID in range [1, 4294967294], got '{value}'"
            ),
        );
    }
    assert_error(
        "version: 1\nprocess: {run_as_group: root}\n",
        "run_as_group must be 'sandbox' or a numeric UID/GID in range [1, 4294967294], got 'root'",
    );
    assert_eq!(
        load_str("version: 1\nprocess: {run_as_user: ''}\n")
            .unwrap()
            .policy
            .process
            .run_as_user,
        None
    );
}

#[test]
fn network_entry_rules() {
    // Sparse entries load, with the reference's meaning and a warning.
    let no_binaries =
        load_str("version: 1\nnetwork_policies:\n  p:\n    endpoints: [{host: a.com, port: 1}]\n")
            .unwrap();
    assert!(
        no_binaries.warnings[0]
            .message
            .contains("lists no binaries, so no program may use it")
    );
    assert!(no_binaries.policy.network["p"].binaries.is_empty());
    let no_endpoints =
        load_str("version: 1\nnetwork_policies:\n  p:\n    binaries: [{path: /x}]\n").unwrap();
    assert!(
        no_endpoints.warnings[0]
            .message
            .contains("network policy 'p' lists no endpoints, so it matches nothing")
    );
    assert_error(
        "version: 1\nnetwork_policies:\n  _provider_x:\n    endpoints: [{host: a.com, port: 1}]\n    binaries: [{path: /x}]\n",
        "network_policies key '_provider_x' uses reserved '_provider_' prefix",
    );
    assert_error(
        "version: 1\nnetwork_policies:\n  p:\n    endpoints: [{host: a.com, port: 1}]\n    binaries: [{path: curl}]\n",
        "binary path must be absolute or start with '**', got 'curl'",
    );
    assert_error(
        "version: 1\nnetwork_policies:\n  p:\n    endpoints: [{host: a.com, port: 1}]\n    binaries: [{path: '/usr/bin**'}]\n",
        "`**` must be a whole path segment",
    );
    let legacy = "version: 1\nnetwork_policies:\n  p:\n    endpoints: [{host: a.com, port: 1}]\n    binaries: [{path: /x, harness: true}]\n";
    assert!(errors(legacy).is_empty(), "legacy harness key is accepted");
    let named = "version: 1\nnetwork_policies:\n  key:\n    name: Display\n    endpoints: [{host: a.com, port: 1}]\n    binaries: [{path: /x}]\n";
    assert_eq!(
        load_str(named).unwrap().policy.network["key"].name,
        "Display"
    );
}

#[test]
fn endpoint_host_and_port_rules() {
    let cases = [
        ("host: a.com", "at least one port is required"),
        ("host: a.com, port: 0", "port must be in 1..=65535"),
        (
            "host: a.com, port: 443, ports: [80]",
            "port and ports are mutually exclusive; use ports for multiple ports",
        ),
        ("port: 443", "host is required unless allowed_ips is set"),
        (
            "host: '*', port: 443",
            "host wildcard '*' matches all hosts; use specific patterns like '*.example.com'",
        ),
        (
            "host: '*.com', port: 443",
            "TLD wildcard '*.com' is not allowed; use subdomain wildcards like '*.example.com' instead",
        ),
        ("host: 'a.com:443', port: 443", "must be a bare hostname"),
        (
            "host: a.com, port: 443, path: api",
            "endpoint path must start with '/' or be '**', got 'api'",
        ),
        (
            "host: a.com, port: 443, tls: mitm",
            "unknown tls mode 'mitm'",
        ),
        (
            "host: a.com, port: 443, protocol: http",
            "unknown protocol 'http' (expected tcp, rest, websocket, graphql, sql, json-rpc, or mcp)",
        ),
        (
            "host: a.com, port: 443, protocol: rest, access: all",
            "unknown access preset 'all' (expected read-only, read-write, or full)",
        ),
        (
            "host: a.com, port: 443, protocol: rest, access: full, enforcement: Enforce",
            "unknown enforcement 'Enforce' (expected enforce or audit)",
        ),
        (
            "host: a.com, port: 443, allowed_ips: [nonsense]",
            "invalid CIDR/IP in allowed_ips: nonsense",
        ),
        (
            "host: a.com, port: 443, allowed_ips: [169.254.0.0/16]",
            "allowed_ips entry 169.254.0.0/16 falls within always-blocked range 169.254.0.0/16",
        ),
    ];
    for (fields, message) in cases {
        assert_error(&endpoint(fields), message);
    }
    let found = errors(&endpoint("host: a.com, port: 70000"));
    assert!(found[0].contains("70000"), "{found:?}");
}

#[test]
fn protocol_matrix_of_reference_1_8() {
    let cases = [
        (
            "protocol: rest, access: full, rules: [{allow: {method: GET}}]",
            "rules and access are mutually exclusive",
        ),
        (
            "protocol: rest",
            "protocol requires rules or access to define allowed traffic",
        ),
        (
            "protocol: websocket",
            "protocol requires rules or access to define allowed traffic",
        ),
        (
            "protocol: graphql",
            "protocol requires rules or access to define allowed traffic",
        ),
        (
            "protocol: json-rpc",
            "protocol json-rpc requires explicit rules with allow.method",
        ),
        (
            "protocol: mcp",
            "protocol mcp requires rules when mcp.allow_all_known_mcp_methods is false",
        ),
        (
            "protocol: mcp, access: full",
            "protocol mcp does not support access presets",
        ),
        (
            "protocol: json-rpc, access: full",
            "protocol json-rpc does not support access presets",
        ),
        (
            "protocol: rest, rules: [{allow: {}}]",
            "rules would deny all traffic (no allow clause found). Use `access: full` or add allow clauses to rules.",
        ),
        (
            "protocol: rest, rules: []",
            "rules list cannot be empty (would deny all traffic). Use `access: full` or remove rules.",
        ),
        (
            "protocol: rest, access: full, deny_rules: []",
            "deny_rules list cannot be empty (would have no effect). Remove it if no denials are needed.",
        ),
        (
            "deny_rules: [{method: DELETE}]",
            "deny_rules require protocol (L7 inspection must be enabled)",
        ),
        (
            "protocol: rest, deny_rules: [{method: DELETE}]",
            "deny_rules require rules or access to define the base allow set",
        ),
        (
            "protocol: tcp, access: full",
            "protocol tcp does not support access, rules, or deny_rules; remove those L7 fields",
        ),
        (
            "protocol: tcp, enforcement: audit, allow_encoded_slash: true",
            "protocol tcp does not support L7-only fields: enforcement, allow_encoded_slash; remove those fields",
        ),
        (
            "protocol: sql, access: full, enforcement: enforce",
            "SQL enforcement requires full SQL parsing; use enforcement: audit",
        ),
        (
            "protocol: graphql, rules: [{allow: {operation_type: read}}]",
            "operation_type must be query, mutation, subscription, or *, got 'read'",
        ),
        (
            "protocol: graphql, rules: [{allow: {operation_type: query, fields: []}}]",
            "fields list cannot be empty",
        ),
        (
            "protocol: rest, access: full, credential_signing: sigv5",
            "unrecognized credential_signing value 'sigv5' (expected sigv4, sigv4:body, or sigv4:no_body)",
        ),
        (
            "protocol: rest, access: full, credential_signing: sigv4",
            "credential_signing set but signing_service is empty",
        ),
        (
            "protocol: rest, access: full, credential_signing: sigv4, signing_service: s3, request_body_credential_rewrite: true",
            "these options are mutually exclusive",
        ),
        (
            "protocol: websocket, rules: [{allow: {method: GET, operation_type: query}}]",
            "websocket rule cannot mix method/path/query with operation_type/operation_name/fields",
        ),
        (
            "protocol: websocket, rules: [{allow: {operation_type: query}}, {allow: {method: WEBSOCKET_TEXT}}]",
            "cannot combine GraphQL operation rules with a WEBSOCKET_TEXT allow",
        ),
        (
            "protocol: json-rpc, rules: [{allow: {method: 'eth_*'}}]",
            "json-rpc method must be an exact name or '*', got 'eth_*'",
        ),
        (
            "protocol: json-rpc, rules: [{allow: {method: eth_call, params: {a: b}}}]",
            "json-rpc rules do not support params matchers",
        ),
        (
            "protocol: mcp, rules: [{allow: {method: '*'}}]",
            "mcp method '*' is not allowed",
        ),
        (
            "protocol: mcp, rules: [{allow: {method: 'resources/*'}}]",
            "mcp method globs are only allowed in the tools/ family",
        ),
        (
            "protocol: mcp, rules: [{allow: {tool: read_file}}]",
            "mcp tool matchers require method: tools/call",
        ),
        (
            "protocol: mcp, mcp: {strict_tool_names: false}, rules: [{allow: {method: tools/call, tool: 'read_*'}}]",
            "wildcard tool matchers require mcp.strict_tool_names: true",
        ),
        (
            "protocol: mcp, rules: [{allow: {method: tools/call, tool: 'bad name'}}]",
            "MCP tool name must match ^[A-Za-z0-9_.-]{1,128}$ when strict_tool_names is enabled",
        ),
        (
            "protocol: mcp, rules: [{allow: {method: tools/call}}, {allow: {method: tools/call, tool: read_file}}]",
            "method matcher allows every tool call and conflicts with MCP tool allow rules",
        ),
        (
            "protocol: rest, access: full, mcp: {strict_tool_names: true}",
            "mcp settings are only valid with protocol: mcp",
        ),
        (
            "protocol: graphql, access: full, graphql_max_body_bytes: 0",
            "graphql_max_body_bytes must be positive",
        ),
        (
            "protocol: graphql, access: full, persisted_queries: maybe",
            "unknown persisted_queries 'maybe'",
        ),
        (
            "protocol: rest, access: full, credential_binding: {provider: ''}",
            "credential_binding.provider must not be empty",
        ),
        (
            "credential_binding: {provider: tok}",
            "credential_binding needs an inspected endpoint",
        ),
        (
            "protocol: rest, access: full, tls: skip, credential_binding: {provider: tok}",
            "credential_binding needs an inspected endpoint",
        ),
        (
            "protocol: rest, rules: [{allow: {method: GET, path: repos}}]",
            "path must start with '/' or be '**', got 'repos'",
        ),
        (
            "protocol: rest, rules: [{allow: {method: 'GE T'}}]",
            "invalid HTTP method 'GE T'",
        ),
        (
            "protocol: rest, rules: [{allow: {method: GET, query: {q: {any: []}}}}]",
            "`any` must list at least one value",
        ),
        (
            "protocol: rest, rules: [{allow: {method: GET, path: '/a[b'}}]",
            "unclosed `[` in glob",
        ),
    ];
    for (fields, message) in cases {
        assert_error(
            &endpoint(&format!("host: a.com, port: 443, {fields}")),
            message,
        );
    }
}

#[test]
fn tcp_host_rules() {
    assert_error(
        &endpoint("protocol: tcp, port: 5432, allowed_ips: [10.0.0.0/24]"),
        "network policy 'p': protocol tcp requires a DNS hostname; hostless allowed_ips endpoints are supported only by the forward proxy",
    );
    assert_error(
        &endpoint("protocol: tcp, host: 10.0.0.1, port: 5432"),
        "network policy 'p': protocol tcp endpoint '10.0.0.1' must use a DNS hostname, not an IP literal; direct IP connections bypass policy DNS and are blocked",
    );
    assert_error(
        &endpoint("protocol: tcp, host: db.example.com., port: 5432"),
        "network policy 'p': protocol tcp endpoint has invalid DNS host selector 'db.example.com.': trailing dot",
    );
    assert!(errors(&endpoint("protocol: tcp, host: db.example.com, port: 5432")).is_empty());
}

#[test]
fn valid_protocol_configurations_load() {
    for fields in [
        "protocol: graphql, access: read-only",
        "protocol: graphql, rules: [{allow: {operation_type: '*'}}]",
        "protocol: sql, access: full",
        "protocol: json-rpc, rules: [{allow: {method: eth_call}}, {allow: {method: '*'}}]",
        "protocol: mcp, mcp: {allow_all_known_mcp_methods: true}",
        "protocol: mcp, rules: [{allow: {method: tools/call, tool: {any: [read_file, list_dir]}}}], deny_rules: [{method: tools/call, tool: rm}]",
        "protocol: websocket, access: read-write, websocket_credential_rewrite: true",
        "protocol: rest, access: full, credential_signing: sigv4, signing_service: s3, signing_region: us-east-1",
        "protocol: rest, rules: [{allow: {method: GET, path: '/repos/{a,b}/**', query: {page: 1, v: 1.10}}}]",
    ] {
        let found = errors(&endpoint(&format!("host: a.com, port: 443, {fields}")));
        assert!(found.is_empty(), "{fields}: {found:#?}");
    }
}

#[test]
fn plain_numbers_in_query_matchers_keep_their_text() {
    let policy = load_str(&endpoint(
        "host: a.com, port: 443, protocol: rest, rules: [{allow: {method: GET, query: {v: 1.10}}}]",
    ))
    .unwrap()
    .policy;
    let rule = &policy.network["p"].endpoints[0].rules[0];
    assert!(rule.query[0].1.matches("1.10"));
    assert!(!rule.query[0].1.matches("1.1"));
}

#[test]
fn warnings_do_not_block_loading() {
    let cases = [
        (
            "host: a.com, port: 443, tls: terminate",
            "tls: terminate is deprecated",
        ),
        (
            "host: a.com, port: 443, protocol: rest, access: full, tls: skip",
            "tls: skip on port 443 prevents L7 inspection",
        ),
        (
            "host: a.com, port: 443, protocol: rest, rules: [{allow: {method: BREW}}]",
            "HTTP method 'BREW' is not one of",
        ),
        (
            "host: a.com, port: 443, access: read-only",
            "access and rules have no effect without protocol",
        ),
        (
            "host: a.com, port: 443, allowed_ips: [10.0.0.0/8]",
            "broader than /16",
        ),
        (
            "host: a.com, port: 443, protocol: graphql, access: full, request_body_credential_rewrite: true",
            "request_body_credential_rewrite only applies to protocol rest",
        ),
        (
            "host: a.com, port: 443, protocol: rest, rules: [{allow: {method: GET, command: SELECT}}]",
            "field(s) command are ignored for protocol rest",
        ),
    ];
    for (fields, message) in cases {
        let found = warnings(&endpoint(fields));
        assert!(
            found.iter().any(|w| w.contains(message)),
            "{fields}: {found:#?}"
        );
    }
}

#[test]
fn defaults_and_typed_values() {
    let policy = load_str(&endpoint("host: API.Example.com, ports: [443, 80, 443], protocol: rest, access: read-only, tls: skip"))
        .unwrap()
        .policy;
    let endpoint = &policy.network["p"].endpoints[0];
    assert_eq!(endpoint.host.as_str(), "api.example.com");
    assert_eq!(endpoint.ports, [80, 443]);
    assert_eq!(endpoint.enforcement, Enforcement::Enforce, "decision 5");
    assert_eq!(endpoint.tls, TlsMode::Skip);
    let methods: Vec<&str> = endpoint.rules.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["GET", "HEAD", "OPTIONS"]);
    let sql = load_str(&self::endpoint(
        "host: db.example.com, port: 5432, protocol: sql, access: full",
    ))
    .unwrap()
    .policy;
    assert_eq!(
        sql.network["p"].endpoints[0].enforcement,
        Enforcement::Audit,
        "sql cannot enforce"
    );
    let rw = load_str(&self::endpoint(
        "host: a.com, port: 443, protocol: rest, access: read-write",
    ))
    .unwrap()
    .policy;
    let methods: Vec<&str> = rw.network["p"].endpoints[0]
        .rules
        .iter()
        .map(|r| r.method.as_str())
        .collect();
    assert_eq!(methods, ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"]);
    let full = load_str(&self::endpoint(
        "host: a.com, port: 443, protocol: rest, access: full",
    ))
    .unwrap()
    .policy;
    assert_eq!(
        full.network["p"].endpoints[0].rules[0].method,
        MethodMatcher::Any
    );
}

#[test]
fn overlapping_endpoints_must_agree() {
    let yaml = r#"
version: 1
network_policies:
  a:
    endpoints: [{host: api.example.com, port: 443, protocol: rest, access: full}]
    binaries: [{path: /usr/bin/curl}]
  b:
    endpoints: [{host: "*.example.com", port: 443, protocol: rest, access: full, enforcement: audit}]
    binaries: [{path: /usr/bin/git}]
"#;
    assert_error(
        yaml,
        "network policies 'a' endpoint[0] (api.example.com:443) and 'b' endpoint[0] (*.example.com:443) overlap on port(s) 443 with conflicting metadata: enforcement",
    );
    let tls = "version: 1\nnetwork_policies:\n  a:\n    endpoints: [{host: x.com, port: 443, tls: skip}, {host: x.com, ports: [443, 80]}]\n    binaries: [{path: /x}]\n";
    assert_error(tls, "conflicting metadata: tls (skip vs auto)");
    let l4_beside_l7 = "version: 1\nnetwork_policies:\n  a:\n    endpoints: [{host: x.com, port: 443}, {host: x.com, port: 443, protocol: rest, access: full}]\n    binaries: [{path: /x}]\n";
    assert!(
        errors(l4_beside_l7).is_empty(),
        "L4 endpoints carry no request metadata"
    );
    let more_specific = "version: 1\nnetwork_policies:\n  a:\n    endpoints: [{host: x.com, port: 443, protocol: rest, access: full}, {host: x.com, port: 443, path: /graphql, protocol: graphql, access: full}]\n    binaries: [{path: /x}]\n";
    assert!(
        errors(more_specific).is_empty(),
        "a more specific path may differ"
    );
}

#[test]
fn middleware_rules_of_reference_1_13() {
    let base = "version: 1\nnetwork_policies:\n  p:\n    endpoints: [{host: api.example.com, port: 443, tls: skip}]\n    binaries: [{path: /x}]\nnetwork_middlewares:\n";
    assert_error(
        &format!(
            "{base}  m: {{middleware: openshell/regex, endpoints: {{include: ['*.example.com']}}}}\n"
        ),
        "middleware config 'm' selects network policy 'p' tls: skip endpoint 'api.example.com'",
    );
    assert!(errors(&format!(
        "{base}  m: {{middleware: openshell/regex, on_error: fail_open, endpoints: {{include: ['*.example.com']}}}}\n"
    ))
    .is_empty());
    assert_error(
        &format!("{base}  m: {{middleware: openshell/nope, endpoints: {{include: [a.org]}}}}\n"),
        "unknown built-in middleware 'openshell/nope'",
    );
    assert_error(
        &format!("{base}  m: {{middleware: x, endpoints: {{include: []}}}}\n"),
        "middleware endpoints.include must not be empty",
    );
    assert_error(
        &format!(
            "{base}  m: {{middleware: x, on_error: ignore, endpoints: {{include: [a.org]}}}}\n"
        ),
        "unknown on_error 'ignore' (expected fail_closed or fail_open)",
    );
    assert_error(
        &format!(
            "{base}  m1: {{middleware: x, order: 1, endpoints: {{include: [a.org]}}}}\n  m2: {{middleware: y, order: 1, endpoints: {{include: [b.org]}}}}\n"
        ),
        "middleware order 1 is used by more than one config",
    );
    let many: String = (0..11)
        .map(|i| {
            format!("  m{i}: {{middleware: x, order: {i}, endpoints: {{include: [a{i}.org]}}}}\n")
        })
        .collect();
    assert_error(
        &format!("{base}{many}"),
        "too many middleware configs (11 > 10)",
    );
}

#[test]
fn every_error_is_reported_with_its_line() {
    let yaml = "version: 1\nprocess:\n  run_as_user: root\nnetwork_policies:\n  p:\n    endpoints:\n      - host: '*'\n        port: 0\n    binaries: [{path: /x}]\n";
    let LoadPolicyError::Invalid(found) = load_str(yaml).unwrap_err() else {
        panic!()
    };
    let lines: Vec<usize> = found.iter().map(|d| d.location.unwrap().line).collect();
    assert_eq!(lines, [3, 7, 8], "{found:#?}");
}
