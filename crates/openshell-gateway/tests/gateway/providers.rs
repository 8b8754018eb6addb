//! Providers through the API and the session: values reach only the
//! supervisors of the sandboxes they are attached to, every change is
//! delivered, versions guard concurrent changes, the database holds
//! values only sealed, and a key rotation loses nothing.

use std::collections::HashMap;

use tonic::Code;

use openshell_gateway::api::Api;
use openshell_gateway::secrets::Keyring;
use openshell_gateway::store::Store;
use openshell_proto::v1 as pb;
use pb::gateway_message::Kind as FromGateway;

use crate::{create, start};

const SECRET: &str = "the-SECRET-value-0001";
const ROTATED: &str = "the-SECRET-value-0002";

fn provider(name: &str, kind: &str, key: &str, value: &str) -> pb::CreateProviderRequest {
    pb::CreateProviderRequest {
        name: name.to_owned(),
        r#type: kind.to_owned(),
        credentials: HashMap::from([(key.to_owned(), value.to_owned())]),
        config: HashMap::new(),
        labels: HashMap::new(),
    }
}

/// The next credentials delivery on a session.
async fn credentials(inbound: &mut tonic::Streaming<pb::GatewayMessage>) -> pb::SandboxCredentials {
    loop {
        match inbound.message().await.unwrap().unwrap().kind {
            Some(FromGateway::Credentials(credentials)) => return credentials,
            Some(FromGateway::Policy(_) | FromGateway::Inference(_)) => continue,
            other => panic!("expected credentials, got {other:?}"),
        }
    }
}

fn binding_policy(provider: &str) -> String {
    format!(
        "version: 1\nnetwork_policies:\n  api:\n    endpoints:\n      - host: api.example.test\n        port: 443\n        protocol: rest\n        access: full\n        credential_binding:\n          provider: {provider}\n    binaries:\n      - path: /usr/bin/curl\n"
    )
}

#[tokio::test]
async fn credentials_travel_only_the_session_and_every_change_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path()).await;
    let mut client = gateway.client().await;
    let created = client
        .create_provider(provider("tok", "generic", "API_TOKEN", SECRET))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.credential_keys, ["API_TOKEN"]);
    assert!(!format!("{created:?}").contains(SECRET));
    client
        .create_provider(provider("gh", "github", "GITHUB_TOKEN", "ghp-SECRET-gh"))
        .await
        .unwrap();

    // Bindings: the policy may bind only an attached, endpointless provider.
    let mut request = create("box", &binding_policy("tok"), &[]);
    let refused = client.create_sandbox(request.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("not attached"), "{refused:?}");
    request.spec.as_mut().unwrap().providers = vec!["tok".into(), "gh".into()];
    let sandbox = client.create_sandbox(request).await.unwrap().into_inner();
    assert_eq!(sandbox.spec.as_ref().unwrap().providers, ["gh", "tok"]);
    let widening = client
        .set_policy(pb::SetPolicyRequest {
            name: "box".into(),
            policy_yaml: binding_policy("gh"),
            expected_version: None,
        })
        .await
        .unwrap_err();
    assert!(widening.message().contains("cannot widen"), "{widening:?}");

    // On connect: every credential, its placeholders and binding.
    let token = gateway.tokens.mint(&sandbox.id);
    let (mut inbound, _tx) = gateway.session_raw(&token, &sandbox.id, 1).await.unwrap();
    let delivered = credentials(&mut inbound).await;
    let tok = delivered
        .credentials
        .iter()
        .find(|c| c.key == "API_TOKEN")
        .unwrap();
    assert_eq!(tok.value, SECRET);
    assert_eq!(tok.placeholders, ["openshell:resolve:env:v1_API_TOKEN"]);
    assert!(tok.endpoints.is_empty(), "bound by the policy");
    let gh = delivered
        .credentials
        .iter()
        .find(|c| c.key == "GITHUB_TOKEN")
        .unwrap();
    assert!(gh.placeholders[0].starts_with("ghp_0penShe11"));
    assert!(gh.endpoints.contains(&"api.github.com:443".to_owned()));

    // Rotation: a new value, the new placeholder first, the old one kept.
    client
        .update_provider(pb::UpdateProviderRequest {
            name: "tok".into(),
            credentials: HashMap::from([("API_TOKEN".into(), ROTATED.into())]),
            config: HashMap::new(),
            expected_resource_version: Some(1),
        })
        .await
        .unwrap();
    let delivered = credentials(&mut inbound).await;
    let tok = delivered
        .credentials
        .iter()
        .find(|c| c.key == "API_TOKEN")
        .unwrap();
    assert_eq!(tok.value, ROTATED);
    assert_eq!(
        tok.placeholders,
        [
            "openshell:resolve:env:v2_API_TOKEN",
            "openshell:resolve:env:v1_API_TOKEN"
        ]
    );
    // A stale version is refused and changes nothing.
    let stale = client
        .update_provider(pb::UpdateProviderRequest {
            name: "tok".into(),
            credentials: HashMap::from([("API_TOKEN".into(), "x".into())]),
            config: HashMap::new(),
            expected_resource_version: Some(1),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");

    // Detach: delivered without it; a stale sandbox version is refused.
    let detach = |expected| pb::SandboxProviderRequest {
        name: "box".into(),
        provider: "gh".into(),
        expected_resource_version: Some(expected),
    };
    let refused = client
        .detach_sandbox_provider(detach(99))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Aborted);
    let done = client
        .detach_sandbox_provider(detach(sandbox.resource_version))
        .await
        .unwrap()
        .into_inner();
    assert!(done.changed);
    let delivered = credentials(&mut inbound).await;
    assert_eq!(delivered.credentials.len(), 1);
    // Detaching what the policy binds is refused.
    let bound = client
        .detach_sandbox_provider(pb::SandboxProviderRequest {
            name: "box".into(),
            provider: "tok".into(),
            expected_resource_version: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bound.code(), Code::FailedPrecondition, "{bound:?}");
    // Deleting an attached provider is refused, naming the sandbox.
    let attached = client
        .delete_provider(pb::DeleteProviderRequest { name: "tok".into() })
        .await
        .unwrap_err();
    assert_eq!(attached.code(), Code::FailedPrecondition);
    assert!(attached.message().contains("box"));

    // Another sandbox's session gets none of it.
    let other = client
        .create_sandbox(create("other", "", &[]))
        .await
        .unwrap()
        .into_inner();
    let (mut other_inbound, _other_tx) = gateway
        .session_raw(&gateway.tokens.mint(&other.id), &other.id, 0)
        .await
        .unwrap();
    assert!(credentials(&mut other_inbound).await.credentials.is_empty());
    gateway.stop().await;

    // The database and its WAL hold no value in the clear.
    for name in ["gateway.db", "gateway.db-wal"] {
        let bytes = std::fs::read(dir.path().join(name)).unwrap_or_default();
        for secret in [SECRET, ROTATED, "ghp-SECRET-gh"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{name} holds a secret in the clear"
            );
        }
    }

    // A key rotation (the gateway stopped, as `--rotate-secrets-key` runs)
    // re-seals everything under a new key; the values survive it.
    let keyring = Keyring::load_or_create(dir.path()).unwrap();
    let old_key = keyring.active_id();
    let store = Store::open(&dir.path().join("gateway.db")).await.unwrap();
    let resealed = Api::new(store, keyring.clone())
        .rotate_secrets_key()
        .await
        .unwrap();
    assert_eq!(resealed, 2);
    assert_ne!(keyring.active_id(), old_key);
    let key_file = std::fs::read_to_string(dir.path().join("secrets.key")).unwrap();
    assert_eq!(
        key_file.lines().count(),
        2,
        "the new key and the previous one"
    );
    // A second rotation retires the first key.
    let store = Store::open(&dir.path().join("gateway.db")).await.unwrap();
    Api::new(store, keyring.clone())
        .rotate_secrets_key()
        .await
        .unwrap();
    let key_file = std::fs::read_to_string(dir.path().join("secrets.key")).unwrap();
    assert!(!key_file.contains(&old_key), "the first key is gone");
    let gateway = start(dir.path()).await;
    let (mut inbound, _tx) = gateway.session_raw(&token, &sandbox.id, 1).await.unwrap();
    let delivered = credentials(&mut inbound).await;
    assert_eq!(delivered.credentials[0].value, ROTATED);
    gateway.stop().await;
}

/// The next inference routes delivery on a session.
async fn routes(inbound: &mut tonic::Streaming<pb::GatewayMessage>) -> pb::InferenceRoutes {
    loop {
        match inbound.message().await.unwrap().unwrap().kind {
            Some(FromGateway::Inference(routes)) => return routes,
            Some(FromGateway::Policy(_) | FromGateway::Credentials(_)) => continue,
            other => panic!("expected inference routes, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn inference_routes_reach_the_workspaces_supervisors_with_the_key_and_follow_every_change() {
    use openshell_gateway::api::WORKSPACE_HEADER;
    let dir = tempfile::tempdir().unwrap();
    let gateway = start(dir.path()).await;
    let mut client = gateway.client().await;
    let mut oai = provider("oai", "openai", "OPENAI_API_KEY", SECRET);
    oai.config
        .insert("OPENAI_BASE_URL".into(), "http://10.213.0.9:8000/v1".into());
    client.create_provider(oai).await.unwrap();
    client
        .create_provider(provider("gh", "github", "GITHUB_TOKEN", "x"))
        .await
        .unwrap();
    let sandbox = client
        .create_sandbox(create("box", "", &[]))
        .await
        .unwrap()
        .into_inner();
    // Another workspace's sandbox sees none of this workspace's routes.
    crate::new_workspace(&mut client, "other").await;
    let mut elsewhere = tonic::Request::new(create("box", "", &[]));
    elsewhere
        .metadata_mut()
        .insert(WORKSPACE_HEADER, "other".parse().unwrap());
    let other = client.create_sandbox(elsewhere).await.unwrap().into_inner();

    let (mut inbound, _tx) = gateway
        .session_raw(&gateway.tokens.mint(&sandbox.id), &sandbox.id, 0)
        .await
        .unwrap();
    let (mut other_inbound, _other_tx) = gateway
        .session_raw(&gateway.tokens.mint(&other.id), &other.id, 0)
        .await
        .unwrap();
    assert!(routes(&mut inbound).await.routes.is_empty());
    assert!(routes(&mut other_inbound).await.routes.is_empty());

    let refused = client
        .set_inference_route(pb::SetInferenceRouteRequest {
            route: String::new(),
            provider: "gh".into(),
            model: "m".into(),
            timeout_seconds: 0,
            no_verify: true,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let set = client
        .set_inference_route(pb::SetInferenceRouteRequest {
            route: String::new(),
            provider: "oai".into(),
            model: "gpt-route".into(),
            timeout_seconds: 0,
            no_verify: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (set.version, set.endpoint.as_str()),
        (1, "http://10.213.0.9:8000/v1")
    );
    assert!(set.validated_endpoints.is_empty());
    assert!(!format!("{set:?}").contains(SECRET));
    let delivered = routes(&mut inbound).await;
    let route = &delivered.routes[0];
    assert_eq!(
        (
            route.model.as_str(),
            route.api_key.as_str(),
            route.auth.as_str()
        ),
        ("gpt-route", SECRET, "bearer")
    );
    assert_eq!(route.timeout_seconds, 60);

    // An update of the route, and of its provider's key, each delivered.
    client
        .update_inference_route(pb::UpdateInferenceRouteRequest {
            route: String::new(),
            provider: None,
            model: Some("gpt-2".into()),
            timeout_seconds: Some(5),
            no_verify: true,
        })
        .await
        .unwrap();
    let delivered = routes(&mut inbound).await;
    assert_eq!(
        (
            delivered.routes[0].model.as_str(),
            delivered.routes[0].version,
            delivered.routes[0].timeout_seconds
        ),
        ("gpt-2", 2, 5)
    );
    client
        .update_provider(pb::UpdateProviderRequest {
            name: "oai".into(),
            credentials: HashMap::from([("OPENAI_API_KEY".into(), ROTATED.into())]),
            config: HashMap::new(),
            expected_resource_version: None,
        })
        .await
        .unwrap();
    assert_eq!(routes(&mut inbound).await.routes[0].api_key, ROTATED);
    let deleted = client
        .delete_inference_route(pb::GetInferenceRouteRequest {
            route: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted);
    assert!(routes(&mut inbound).await.routes.is_empty());
    let missing = client
        .get_inference_route(pb::GetInferenceRouteRequest {
            route: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let unknown = client
        .get_inference_route(pb::GetInferenceRouteRequest {
            route: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    // The other workspace's session got nothing after its first delivery.
    let nothing = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        other_inbound.message(),
    )
    .await;
    assert!(
        nothing.is_err(),
        "another workspace got a delivery: {nothing:?}"
    );
    gateway.stop().await;
}
