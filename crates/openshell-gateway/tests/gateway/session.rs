//! Supervisor sessions over real sockets: a token opens only its own
//! sandbox's session, revisions travel the session and come back as
//! loaded or failed, and exec is relayed both ways.

use tonic::transport::Channel;
use tonic::{Code, Request};

use openshell_gateway::auth::Tokens;
use openshell_proto::v1 as pb;
use openshell_proto::v1::gateway_client::GatewayClient;

use crate::{POLICY_V1, POLICY_V2, POLICY_V3, create, start, supervisor};

#[tokio::test]
async fn a_sandbox_token_opens_only_its_own_session_and_never_the_user_api() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path()).await;
    let mut client = gateway.client().await;
    let alpha = client
        .create_sandbox(create("alpha", POLICY_V1, &[]))
        .await
        .unwrap()
        .into_inner();
    let beta = client
        .create_sandbox(create("beta", "", &[]))
        .await
        .unwrap()
        .into_inner();
    let token_a = gateway.tokens.mint(&alpha.id);

    // Its own session works, and delivers the revision it lacks.
    let (mut inbound, _tx) = gateway.session(&token_a, &alpha.id, 0).await.unwrap();
    match inbound.message().await.unwrap().unwrap().kind {
        Some(pb::gateway_message::Kind::Policy(update)) => {
            assert_eq!(update.version, 1);
            assert_eq!(update.policy_yaml, POLICY_V1);
        }
        other => panic!("expected the policy, got {other:?}"),
    }
    // Another sandbox's session: refused.
    let other = gateway.session(&token_a, &beta.id, 0).await.unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied, "{other:?}");
    // A forged token (alpha's MAC on beta's id), junk, or none: refused.
    let forged = token_a.replace(&alpha.id, &beta.id);
    for token in [forged.as_str(), "v1.x.00", ""] {
        let refused = gateway.session(token, &beta.id, 0).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::Unauthenticated,
            "{token:?}: {refused:?}"
        );
    }
    // Another gateway's token for the same id: refused.
    let foreign = Tokens::from_secret(&[1u8; 32]).mint(&beta.id);
    let refused = gateway.session(&foreign, &beta.id, 0).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // The token on the user API, even over a connection that has the
    // user's certificate: refused, and nothing changes.
    let mut request = Request::new(pb::DeleteSandboxRequest {
        name: "beta".into(),
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token_a}").parse().unwrap(),
    );
    let refused = client.delete_sandbox(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let mut request = Request::new(pb::HealthRequest {});
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token_a}").parse().unwrap(),
    );
    let mut tokened = GatewayClient::new(gateway.channel(false).await);
    assert!(tokened.health(request).await.is_err());
    let names: Vec<String> = client
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandboxes
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    gateway.stop().await;
}

#[tokio::test]
async fn policy_revisions_reach_the_session_and_record_what_the_supervisor_did() {
    use pb::gateway_message::Kind as FromGateway;
    use pb::supervisor_message::Kind as ToGateway;
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path()).await;
    let mut client = gateway.client().await;
    let sandbox = client
        .create_sandbox(create("live", POLICY_V1, &[]))
        .await
        .unwrap()
        .into_inner();
    let token = gateway.tokens.mint(&sandbox.id);
    // The supervisor started with revision 1: nothing to send, 1 is loaded.
    let (mut inbound, outbound) = gateway.session(&token, &sandbox.id, 1).await.unwrap();
    let set = |yaml: &str| pb::SetPolicyRequest {
        name: "live".into(),
        policy_yaml: yaml.to_owned(),
        expected_version: None,
    };
    let get = |version: i64| pb::GetPolicyRequest {
        name: "live".into(),
        version,
    };

    // Invalid: INVALID_ARGUMENT with the validation message, nothing stored.
    let invalid = client
        .set_policy(set("version: 1\nfilesystem_policy:\n  read_write: [/]\n"))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(invalid.message().contains("overly broad"), "{invalid:?}");

    let v2 = client
        .set_policy(set(POLICY_V2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (v2.version, v2.status.as_str(), v2.unchanged),
        (2, "pending", false)
    );
    assert_eq!(v2.active_version, 1);
    match inbound.message().await.unwrap().unwrap().kind {
        Some(FromGateway::Policy(update)) => assert_eq!(update.version, 2),
        other => panic!("expected revision 2, got {other:?}"),
    }
    // Based on a stale version: ABORTED, nothing stored.
    let stale = client
        .set_policy(pb::SetPolicyRequest {
            expected_version: Some(1),
            ..set(POLICY_V1)
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    // The same YAML again: unchanged, nothing sent.
    let again = client
        .set_policy(set(POLICY_V2))
        .await
        .unwrap()
        .into_inner();
    assert!(again.unchanged);
    assert_eq!(again.version, 2);

    outbound
        .send(supervisor(ToGateway::PolicyStatus(pb::PolicyStatus {
            version: 2,
            loaded: true,
            error: String::new(),
        })))
        .await
        .unwrap();
    let loaded = wait_for_status(&mut client, 2, "loaded").await;
    assert_eq!(loaded.active_version, 2);
    assert!(loaded.loaded_at_ms > 0);
    let first = client.get_policy(get(1)).await.unwrap().into_inner();
    assert_eq!(first.status, "superseded");

    // A revision the supervisor rejects: failed with its reason, and the
    // effective revision stays 2.
    client.set_policy(set(POLICY_V3)).await.unwrap();
    inbound.message().await.unwrap().unwrap();
    outbound
        .send(supervisor(ToGateway::PolicyStatus(pb::PolicyStatus {
            version: 3,
            loaded: false,
            error: "filesystem changed".into(),
        })))
        .await
        .unwrap();
    let failed = wait_for_status(&mut client, 3, "failed").await;
    assert_eq!(failed.error, "filesystem changed");
    let effective = client.get_policy(get(0)).await.unwrap().into_inner();
    assert_eq!(
        (effective.version, effective.status.as_str()),
        (2, "loaded")
    );
    let listed: Vec<(i64, String)> = client
        .list_policies(pb::ListPoliciesRequest {
            name: "live".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .revisions
        .into_iter()
        .map(|r| (r.version, r.status))
        .collect();
    assert_eq!(
        listed,
        [
            (3, "failed".to_owned()),
            (2, "loaded".to_owned()),
            (1, "superseded".to_owned())
        ]
    );
    let missing = client.get_policy(get(9)).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    gateway.stop().await;
}

async fn wait_for_status(
    client: &mut GatewayClient<Channel>,
    version: i64,
    status: &str,
) -> pb::PolicyRevision {
    for _ in 0..200 {
        let revision = client
            .get_policy(pb::GetPolicyRequest {
                name: "live".into(),
                version,
            })
            .await
            .unwrap()
            .into_inner();
        if revision.status == status {
            return revision;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("revision {version} never became {status}");
}

#[tokio::test]
async fn exec_is_relayed_through_the_session_both_ways() {
    use pb::exec_input::Kind as Input;
    use pb::exec_output::Kind as Output;
    use pb::gateway_message::Kind as FromGateway;
    use pb::supervisor_message::Kind as ToGateway;
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path()).await;
    let mut client = gateway.client().await;
    let sandbox = client
        .create_sandbox(create("box", "", &[]))
        .await
        .unwrap()
        .into_inner();
    let (mut inbound, outbound) = gateway
        .session(&gateway.tokens.mint(&sandbox.id), &sandbox.id, 0)
        .await
        .unwrap();
    let (input, inputs) = tokio::sync::mpsc::channel(4);
    input
        .send(pb::ExecInput {
            exec_id: String::new(),
            kind: Some(Input::Start(pb::ExecStart {
                name: "box".into(),
                command: vec!["cat".into()],
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    input
        .send(pb::ExecInput {
            exec_id: String::new(),
            kind: Some(Input::Stdin(b"ping".to_vec())),
        })
        .await
        .unwrap();
    let mut outputs = client
        .exec(tokio_stream::wrappers::ReceiverStream::new(inputs))
        .await
        .unwrap()
        .into_inner();
    // The supervisor sees the start (without the sandbox name) and the stdin.
    let start = match inbound.message().await.unwrap().unwrap().kind {
        Some(FromGateway::Exec(exec)) => exec,
        other => panic!("expected an exec, got {other:?}"),
    };
    let exec_id = start.exec_id.clone();
    match start.kind {
        Some(Input::Start(s)) => {
            assert_eq!((s.command, s.name), (vec!["cat".to_owned()], String::new()))
        }
        other => panic!("expected a start, got {other:?}"),
    }
    match inbound.message().await.unwrap().unwrap().kind {
        Some(FromGateway::Exec(pb::ExecInput {
            kind: Some(Input::Stdin(data)),
            exec_id: id,
        })) => assert_eq!(
            (data.as_slice(), id.as_str()),
            (b"ping".as_slice(), exec_id.as_str())
        ),
        other => panic!("expected stdin, got {other:?}"),
    }
    for kind in [
        Output::Stdout(b"pong".to_vec()),
        Output::Stderr(b"warn".to_vec()),
        Output::ExitCode(3),
    ] {
        outbound
            .send(supervisor(ToGateway::Exec(pb::ExecOutput {
                exec_id: exec_id.clone(),
                kind: Some(kind),
            })))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while let Some(message) = outputs.message().await.unwrap() {
        got.push(message.kind.unwrap());
    }
    assert_eq!(
        got,
        [
            Output::Stdout(b"pong".to_vec()),
            Output::Stderr(b"warn".to_vec()),
            Output::ExitCode(3)
        ]
    );

    // No command, or an unknown sandbox: refused before anything runs.
    for (name, command, code) in [
        ("box", vec![], Code::InvalidArgument),
        ("nope", vec!["true".to_owned()], Code::NotFound),
    ] {
        let (input, inputs) = tokio::sync::mpsc::channel(1);
        input
            .send(pb::ExecInput {
                exec_id: String::new(),
                kind: Some(Input::Start(pb::ExecStart {
                    name: name.into(),
                    command,
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
        drop(input);
        let refused = client
            .exec(tokio_stream::wrappers::ReceiverStream::new(inputs))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), code, "{refused:?}");
    }
    gateway.stop().await;
}

/// A `Forward` stream's opening frame for the SSH server.
fn ssh_open(name: &str, token: &str) -> pb::ForwardFrame {
    pb::ForwardFrame {
        stream_id: String::new(),
        kind: Some(pb::forward_frame::Kind::Open(pb::ForwardOpen {
            name: name.into(),
            ssh_token: token.into(),
            ..Default::default()
        })),
    }
}

#[tokio::test]
async fn an_ssh_session_token_reaches_only_the_sandbox_it_was_issued_for() {
    use pb::forward_frame::Kind as Frame;
    use pb::gateway_message::Kind as FromGateway;
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path()).await;
    let mut client = gateway.client().await;
    let mut ids = Vec::new();
    for name in ["alpha", "beta"] {
        ids.push(
            client
                .create_sandbox(create(name, "", &[]))
                .await
                .unwrap()
                .into_inner()
                .id,
        );
    }
    let (mut alpha, _alpha_out) = gateway
        .session(&gateway.tokens.mint(&ids[0]), &ids[0], 0)
        .await
        .unwrap();
    let (mut beta, _beta_out) = gateway
        .session(&gateway.tokens.mint(&ids[1]), &ids[1], 0)
        .await
        .unwrap();
    let session = client
        .create_ssh_session(pb::CreateSshSessionRequest {
            name: "alpha".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (session.sandbox.as_str(), session.sandbox_id.as_str()),
        ("alpha", ids[0].as_str())
    );
    assert_eq!(session.token.len(), 64);

    // The token decides: naming beta in the stream still lands in alpha.
    let (frames, rx) = tokio::sync::mpsc::channel(4);
    frames.send(ssh_open("beta", &session.token)).await.unwrap();
    let _replies = client
        .forward(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap();
    match alpha.message().await.unwrap().unwrap().kind {
        Some(FromGateway::Forward(pb::ForwardFrame {
            kind: Some(Frame::Open(open)),
            ..
        })) => assert_eq!(
            (open.ssh, open.port, open.ssh_token.as_str()),
            (true, 0, "")
        ),
        other => panic!("expected an ssh open, got {other:?}"),
    }
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(300), beta.message()).await;
    assert!(nothing.is_err(), "beta's supervisor got {nothing:?}");

    // No token, a wrong one, another workspace's view, or ssh set by the
    // client: refused before anything reaches a supervisor.
    crate::new_workspace(&mut client, "other").await;
    let mut other_workspace = Request::new(tokio_stream::iter(vec![ssh_open("", &session.token)]));
    other_workspace
        .metadata_mut()
        .insert("x-openshell-workspace", "other".parse().unwrap());
    let refused = client.forward(other_workspace).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let forged = "0".repeat(64);
    let raw_ssh = pb::ForwardFrame {
        stream_id: String::new(),
        kind: Some(Frame::Open(pb::ForwardOpen {
            name: "beta".into(),
            ssh: true,
            ..Default::default()
        })),
    };
    for (frame, code) in [
        (ssh_open("beta", &forged), Code::PermissionDenied),
        (raw_ssh, Code::InvalidArgument),
    ] {
        let refused = client
            .forward(tokio_stream::iter(vec![frame]))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), code, "{refused:?}");
    }
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(300), beta.message()).await;
    assert!(nothing.is_err(), "beta's supervisor got {nothing:?}");

    // Deleting the sandbox revokes its tokens.
    client
        .delete_sandbox(pb::DeleteSandboxRequest {
            name: "alpha".into(),
        })
        .await
        .unwrap();
    let refused = client
        .forward(tokio_stream::iter(vec![ssh_open("", &session.token)]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let missing = client
        .create_ssh_session(pb::CreateSshSessionRequest {
            name: "alpha".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    gateway.stop().await;
}

#[tokio::test]
async fn a_goodbye_ends_the_session_after_what_came_before_it_was_handled() {
    use pb::supervisor_message::Kind as ToGateway;
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path()).await;
    let mut client = gateway.client().await;
    let sandbox = client
        .create_sandbox(create("leaving", POLICY_V1, &[]))
        .await
        .unwrap()
        .into_inner();
    let (mut inbound, outbound) = gateway
        .session(&gateway.tokens.mint(&sandbox.id), &sandbox.id, 0)
        .await
        .unwrap();
    for kind in [
        ToGateway::PolicyStatus(pb::PolicyStatus {
            version: 1,
            loaded: true,
            error: String::new(),
        }),
        ToGateway::Goodbye(true),
    ] {
        outbound.send(supervisor(kind)).await.unwrap();
    }
    // The gateway ends the session (the supervisor may exit now) while the
    // supervisor's side of the stream is still open.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while inbound.message().await.unwrap().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the gateway kept the session open");
    let revision = client
        .get_policy(pb::GetPolicyRequest {
            name: "leaving".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revision.status, "loaded");
    let info = client
        .get_gateway_info(pb::GatewayInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.connected_supervisors, 0);
    drop(outbound);
    gateway.stop().await;
}
