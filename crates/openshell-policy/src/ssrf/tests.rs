use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn classes_of_reference_addresses() {
    let table = [
        ("127.0.0.1", AddressClass::AlwaysBlocked),
        ("127.255.0.9", AddressClass::AlwaysBlocked),
        ("169.254.169.254", AddressClass::AlwaysBlocked),
        ("169.254.1.1", AddressClass::AlwaysBlocked),
        ("0.0.0.0", AddressClass::AlwaysBlocked),
        ("::1", AddressClass::AlwaysBlocked),
        ("::", AddressClass::AlwaysBlocked),
        ("fe80::1", AddressClass::AlwaysBlocked),
        ("fd00:ec2::254", AddressClass::AlwaysBlocked),
        ("::ffff:127.0.0.1", AddressClass::AlwaysBlocked),
        ("::ffff:169.254.169.254", AddressClass::AlwaysBlocked),
        ("::ffff:0.0.0.0", AddressClass::AlwaysBlocked),
        ("::127.0.0.1", AddressClass::AlwaysBlocked),
        ("64:ff9b::7f00:1", AddressClass::AlwaysBlocked),
        ("10.1.2.3", AddressClass::Internal),
        ("172.16.0.1", AddressClass::Internal),
        ("172.31.255.255", AddressClass::Internal),
        ("192.168.1.1", AddressClass::Internal),
        ("100.64.0.1", AddressClass::Internal),
        ("192.0.0.8", AddressClass::Internal),
        ("192.0.2.1", AddressClass::Internal),
        ("198.51.100.1", AddressClass::Internal),
        ("203.0.113.1", AddressClass::Internal),
        ("198.18.0.1", AddressClass::Internal),
        ("198.19.255.1", AddressClass::Internal),
        ("255.255.255.255", AddressClass::Internal),
        ("224.0.0.1", AddressClass::Internal),
        ("fc00::1", AddressClass::Internal),
        ("fd12:3456::1", AddressClass::Internal),
        ("::ffff:10.0.0.1", AddressClass::Internal),
        ("::ffff:192.168.0.1", AddressClass::Internal),
        ("172.32.0.1", AddressClass::Public),
        ("8.8.8.8", AddressClass::Public),
        ("2606:4700::1111", AddressClass::Public),
        ("::ffff:8.8.8.8", AddressClass::Public),
    ];
    for (addr, class) in table {
        assert_eq!(classify(ip(addr)), class, "{addr}");
    }
}

#[test]
fn allowed_ips_entries_parse_and_reject_blocked_overlap() {
    assert_eq!(
        parse_allowed_ip("10.0.0.0/8").unwrap().to_string(),
        "10.0.0.0/8"
    );
    assert_eq!(
        parse_allowed_ip("10.1.2.3").unwrap().to_string(),
        "10.1.2.3/32"
    );
    assert_eq!(
        parse_allowed_ip("10.1.2.3/8").unwrap().to_string(),
        "10.0.0.0/8",
        "host bits are truncated"
    );
    for entry in [
        "127.0.0.1",
        "169.254.169.254/32",
        "0.0.0.0/0",
        "::1",
        "::/0",
        "fe80::/64",
        "::ffff:0:0/96",
        "0.0.0.0",
    ] {
        assert!(
            matches!(
                parse_allowed_ip(entry),
                Err(AllowedIpError::AlwaysBlocked { .. })
            ),
            "{entry}"
        );
    }
    assert_eq!(
        parse_allowed_ip("10.0.0.300").unwrap_err().to_string(),
        "invalid CIDR/IP in allowed_ips: 10.0.0.300"
    );
    let err = parse_allowed_ip("127.0.0.0/8").unwrap_err();
    assert_eq!(
        err.to_string(),
        "allowed_ips entry 127.0.0.0/8 falls within always-blocked range 127.0.0.0/8"
    );
}

#[test]
fn public_only_refuses_any_internal_answer() {
    let err = check_destination(
        DestinationMode::PublicOnly,
        "evil.test",
        443,
        &[ip("8.8.8.8"), ip("10.0.0.5")],
    )
    .unwrap_err();
    assert_eq!(err.kind.as_str(), "internal address");
    assert_eq!(
        err.reason,
        "evil.test resolves to internal address 10.0.0.5, connection rejected"
    );
    assert!(
        check_destination(
            DestinationMode::PublicOnly,
            "ok.test",
            443,
            &[ip("8.8.8.8")]
        )
        .is_ok()
    );
}

#[test]
fn declared_host_allows_private_but_never_always_blocked() {
    assert!(
        check_destination(
            DestinationMode::DeclaredHost,
            "db.corp",
            5432,
            &[ip("10.0.0.5")]
        )
        .is_ok()
    );
    let err = check_destination(
        DestinationMode::DeclaredHost,
        "db.corp",
        80,
        &[ip("169.254.169.254")],
    )
    .unwrap_err();
    assert_eq!(err.kind.as_str(), "declared endpoint check failed");
    let err = check_destination(
        DestinationMode::DeclaredHost,
        "db.corp",
        80,
        &[ip("::ffff:127.0.0.1")],
    )
    .unwrap_err();
    assert!(err.reason.contains("always-blocked"), "{err}");
}

#[test]
fn allowed_ips_must_contain_every_address() {
    let nets = [parse_allowed_ip("10.0.0.0/24").unwrap()];
    let mode = DestinationMode::AllowedIps(&nets);
    assert!(check_destination(mode, "h", 80, &[ip("10.0.0.9")]).is_ok());
    assert!(check_destination(mode, "h", 80, &[ip("::ffff:10.0.0.9")]).is_ok());
    let err = check_destination(mode, "h", 80, &[ip("10.0.0.9"), ip("10.0.1.1")]).unwrap_err();
    assert_eq!(err.kind.as_str(), "allowed_ips check failed");
    assert_eq!(
        err.reason,
        "h resolves to 10.0.1.1, which is not in allowed_ips, connection rejected"
    );
}

#[test]
fn ip_literal_is_an_implicit_allowed_ip() {
    let mode = DestinationMode::IpLiteral(ip("10.0.0.7"));
    assert!(check_destination(mode, "10.0.0.7", 80, &[ip("10.0.0.7")]).is_ok());
    assert!(check_destination(mode, "10.0.0.7", 80, &[ip("10.0.0.8")]).is_err());
    let loopback = DestinationMode::IpLiteral(ip("127.0.0.1"));
    assert!(check_destination(loopback, "127.0.0.1", 80, &[ip("127.0.0.1")]).is_err());
}

#[test]
fn control_plane_ports_are_blocked_when_address_is_allowed() {
    let nets = [parse_allowed_ip("10.0.0.0/24").unwrap()];
    for port in CONTROL_PLANE_PORTS {
        let err = check_destination(
            DestinationMode::AllowedIps(&nets),
            "k8s",
            port,
            &[ip("10.0.0.1")],
        )
        .unwrap_err();
        assert_eq!(
            err.reason,
            format!("port {port} is a blocked control-plane port, connection rejected")
        );
    }
}

#[test]
fn trusted_gateway_must_be_that_exact_link_local_address() {
    let mode = DestinationMode::TrustedGateway(ip("169.254.1.2"));
    assert!(check_destination(mode, "host.openshell.internal", 8080, &[ip("169.254.1.2")]).is_ok());
    assert!(
        check_destination(mode, "host.openshell.internal", 8080, &[ip("169.254.1.3")]).is_err()
    );
    let metadata = DestinationMode::TrustedGateway(ip("169.254.169.254"));
    assert!(
        check_destination(
            metadata,
            "host.openshell.internal",
            80,
            &[ip("169.254.169.254")]
        )
        .is_err()
    );
    let not_link_local = DestinationMode::TrustedGateway(ip("10.0.0.1"));
    assert!(
        check_destination(
            not_link_local,
            "host.openshell.internal",
            80,
            &[ip("10.0.0.1")]
        )
        .is_err()
    );
}

#[test]
fn no_addresses_is_a_denial() {
    let err = check_destination(DestinationMode::PublicOnly, "nx.test", 80, &[]).unwrap_err();
    assert_eq!(
        err.reason,
        "DNS resolution returned no addresses for nx.test"
    );
}

#[test]
fn the_hosts_own_addresses_need_an_exact_allowed_ips_entry() {
    let own: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()];
    let ip: IpAddr = "10.0.0.5".parse().unwrap();
    let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
    for mode in [
        DestinationMode::IpLiteral(ip),
        DestinationMode::DeclaredHost,
        DestinationMode::PublicOnly,
    ] {
        let denied = check_host_addresses(mode, "h", &[ip], &own).unwrap_err();
        assert_eq!(denied.kind, DeniedKind::HostAddress);
        assert!(check_host_addresses(mode, "h", &[mapped], &own).is_err());
    }
    let broad = [parse_allowed_ip("10.0.0.0/8").unwrap()];
    assert!(check_host_addresses(DestinationMode::AllowedIps(&broad), "h", &[ip], &own).is_err());
    let exact = [parse_allowed_ip("10.0.0.5").unwrap()];
    assert!(check_host_addresses(DestinationMode::AllowedIps(&exact), "h", &[ip], &own).is_ok());
    let other: IpAddr = "10.0.0.6".parse().unwrap();
    assert!(check_host_addresses(DestinationMode::PublicOnly, "h", &[other], &own).is_ok());
}
