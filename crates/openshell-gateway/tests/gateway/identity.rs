//! Who may do what, with real identities over real mTLS: the gateway's
//! own CLI certificate (an admin), a user's certificate issued by the
//! gateway's CA, and user tokens (docs/cli.md, "Workspaces and who may use
//! them").

use tonic::transport::Channel;
use tonic::{Code, Request};

use openshell_gateway::api::WORKSPACE_HEADER;
use openshell_gateway::auth::Role;
use openshell_gateway::pki;
use openshell_proto::v1 as pb;
use openshell_proto::v1::gateway_client::GatewayClient;

use crate::{Gateway, create, start};

/// A client presenting the certificate the gateway's CA issued to `subject`.
async fn client_as(gateway: &Gateway, subject: &str, role: Role) -> GatewayClient<Channel> {
    let out = tempfile::tempdir().unwrap();
    gateway.pki.issue_client(subject, role, out.path()).unwrap();
    let read = |path: &str| std::fs::read_to_string(out.path().join(path)).unwrap();
    let channel = gateway
        .channel_as(Some((read("client/tls.crt"), read("client/tls.key"))))
        .await;
    GatewayClient::new(channel)
}

fn in_workspace<T>(workspace: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(WORKSPACE_HEADER, workspace.parse().unwrap());
    request
}

fn with_token<T>(token: &str, workspace: &str, message: T) -> Request<T> {
    let mut request = in_workspace(workspace, message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn member(workspace: &str, subject: &str, role: &str) -> pb::WorkspaceMember {
    pb::WorkspaceMember {
        workspace: workspace.into(),
        subject: subject.into(),
        role: role.into(),
    }
}

fn list_all() -> pb::ListSandboxesRequest {
    pb::ListSandboxesRequest {
        all_workspaces: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn users_reach_only_their_workspaces_and_only_admins_change_the_gateway() {
    let state = tempfile::tempdir().unwrap();
    let gateway = start(state.path()).await;
    let mut admin = gateway.client().await;
    let mut alice = client_as(&gateway, "alice", Role::User).await;

    let me = alice
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            me.subject.as_str(),
            me.roles.as_slice(),
            me.identity_provider.as_str()
        ),
        ("alice", &["user".to_owned()][..], "mtls")
    );
    let root = admin
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (root.subject.as_str(), root.roles[0].as_str()),
        (pki::BOOTSTRAP_SUBJECT, "admin")
    );

    // A user who is no member sees nothing, not even whether it exists.
    admin
        .create_sandbox(create("admins-box", "", &[]))
        .await
        .unwrap();
    for workspace in ["default", "nowhere"] {
        let refused = alice
            .list_sandboxes(in_workspace(workspace, pb::ListSandboxesRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        assert!(
            refused
                .message()
                .contains("'alice' is not a member of workspace"),
            "{refused:?}"
        );
    }
    let refused = alice
        .get_sandbox(pb::GetSandboxRequest {
            name: "admins-box".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Workspaces: an admin makes them and their members.
    let refused = alice
        .create_workspace(pb::CreateWorkspaceRequest {
            name: "mine".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    admin
        .create_workspace(pb::CreateWorkspaceRequest {
            name: "team".into(),
            labels: [("tier".to_owned(), "gold".to_owned())].into(),
        })
        .await
        .unwrap();
    let long = admin
        .create_workspace(pb::CreateWorkspaceRequest {
            name: "a-very-long-workspace-name".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);
    admin
        .add_workspace_member(member("team", "alice", "user"))
        .await
        .unwrap();

    // A member works in its workspace, and only there.
    alice
        .create_sandbox(in_workspace("team", create("alices-box", "", &[])))
        .await
        .unwrap();
    let mine = alice.list_sandboxes(list_all()).await.unwrap().into_inner();
    assert_eq!(
        mine.sandboxes
            .iter()
            .map(|s| (s.workspace.as_str(), s.name.as_str()))
            .collect::<Vec<_>>(),
        [("team", "alices-box")]
    );
    let everything = admin.list_sandboxes(list_all()).await.unwrap().into_inner();
    assert_eq!(
        everything.sandboxes.len(),
        2,
        "an admin sees every workspace"
    );
    let listed = alice
        .list_workspaces(pb::ListWorkspacesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.workspaces.len(), 1);
    assert_eq!(listed.workspaces[0].name, "team");

    // A plain member manages no members, no workspaces, nothing global.
    let refused = alice
        .add_workspace_member(member("team", "mallory", "admin"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = alice
        .delete_workspace(pb::GetWorkspaceRequest {
            name: "team".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = alice
        .set_setting(in_workspace(
            "team",
            pb::SetSettingRequest {
                name: String::new(),
                key: "ocsf_json_enabled".into(),
                value: "true".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = alice
        .get_gateway_info(pb::GatewayInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // Its own sandbox's settings are its to change.
    alice
        .set_setting(in_workspace(
            "team",
            pb::SetSettingRequest {
                name: "alices-box".into(),
                key: "ocsf_json_enabled".into(),
                value: "true".into(),
            },
        ))
        .await
        .unwrap();

    // A workspace admin manages its members.
    admin
        .add_workspace_member(member("team", "alice", "admin"))
        .await
        .unwrap();
    alice
        .add_workspace_member(member("team", "bob", "user"))
        .await
        .unwrap();
    let members = alice
        .list_workspace_members(pb::GetWorkspaceRequest {
            name: "team".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(
        members
            .iter()
            .map(|m| (m.subject.as_str(), m.role.as_str()))
            .collect::<Vec<_>>(),
        [("alice", "admin"), ("bob", "user")]
    );

    // Bad input is refused and changes nothing.
    for (subject, role) in [("bob", "root"), ("a b", "user"), ("", "user")] {
        let refused = alice
            .add_workspace_member(member("team", subject, role))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{subject:?} {role:?}"
        );
    }
    let refused = admin
        .list_sandboxes(in_workspace(
            "Not_A_Workspace",
            pb::ListSandboxesRequest::default(),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);

    // A workspace with sandboxes is not deleted; an empty one is.
    let refused = admin
        .delete_workspace(pb::GetWorkspaceRequest {
            name: "team".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        admin
            .get_workspace(pb::GetWorkspaceRequest {
                name: "team".into()
            })
            .await
            .is_ok()
    );
    let refused = admin
        .delete_workspace(pb::GetWorkspaceRequest {
            name: "default".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    gateway.stop().await;
}

#[tokio::test]
async fn user_tokens_identify_callers_and_cannot_be_forged_or_swapped() {
    let state = tempfile::tempdir().unwrap();
    let gateway = start(state.path()).await;
    let mut admin = gateway.client().await;
    crate::new_workspace(&mut admin, "team").await;
    admin
        .add_workspace_member(member("team", "bob@example.com", "user"))
        .await
        .unwrap();
    // No client certificate: only the token says who calls.
    let mut anonymous = GatewayClient::new(gateway.channel(false).await);
    let refused = anonymous
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    let token = gateway
        .tokens
        .mint_user("bob@example.com", Role::User, u64::MAX);
    let me = anonymous
        .get_current_user(with_token(&token, "team", pb::GetCurrentUserRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (me.subject.as_str(), me.identity_provider.as_str()),
        ("bob@example.com", "bearer")
    );
    assert_eq!(me.memberships.len(), 1);
    anonymous
        .create_sandbox(with_token(&token, "team", create("bobs", "", &[])))
        .await
        .unwrap();
    let refused = anonymous
        .list_sandboxes(with_token(
            &token,
            "default",
            pb::ListSandboxesRequest::default(),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // A token promoted to admin by hand, an expired one, and a sandbox's
    // own token all fail.
    let forged = token.replace(".user.", ".admin.");
    let expired = gateway.tokens.mint_user("bob@example.com", Role::Admin, 1);
    for bad in [forged, expired] {
        let refused = anonymous
            .list_workspaces(with_token(&bad, "team", pb::ListWorkspacesRequest {}))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    let sandbox_token = gateway.tokens.mint("whatever");
    let refused = anonymous
        .list_workspaces(with_token(
            &sandbox_token,
            "team",
            pb::ListWorkspacesRequest {},
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    gateway.stop().await;
}

#[tokio::test]
async fn no_name_role_or_workspace_admin_reaches_beyond_what_it_was_given() {
    let state = tempfile::tempdir().unwrap();
    let gateway = start(state.path()).await;
    let mut admin = gateway.client().await;
    crate::new_workspace(&mut admin, "team").await;
    admin
        .create_provider(pb::CreateProviderRequest {
            name: "admins-key".into(),
            r#type: "generic".into(),
            credentials: [("API_KEY".to_owned(), "secret".to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // A user certificate that borrows the admin's name stays a user.
    let mut impostor = client_as(&gateway, pki::BOOTSTRAP_SUBJECT, Role::User).await;
    let me = impostor
        .get_current_user(pb::GetCurrentUserRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.roles, ["user"]);
    let refused = impostor
        .create_workspace(pb::CreateWorkspaceRequest {
            name: "mine".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // An admin of one workspace manages that one only.
    admin
        .add_workspace_member(member("team", "carol", "admin"))
        .await
        .unwrap();
    let mut carol = client_as(&gateway, "carol", Role::User).await;
    carol
        .add_workspace_member(member("team", "dave", "user"))
        .await
        .unwrap();
    for workspace in ["default", "nowhere"] {
        let refused = carol
            .add_workspace_member(member(workspace, "carol", "admin"))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "{workspace}: {refused:?}"
        );
    }
    let refused = carol
        .delete_workspace(pb::GetWorkspaceRequest {
            name: "team".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Listing across workspaces shows nothing of the others'.
    let providers = carol
        .list_providers(pb::ListProvidersRequest {
            all_workspaces: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .providers;
    assert!(providers.is_empty(), "{providers:?}");
    let refused = carol
        .get_provider(pb::GetProviderRequest {
            name: "admins-key".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = carol
        .get_settings(in_workspace(
            "default",
            pb::GetSettingsRequest {
                name: "anything".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    gateway.stop().await;
}
