//! [`PolicyDocument`]: the policy exactly as written in YAML.
//!
//! Every struct rejects unknown keys. Enumerated values (`protocol`,
//! `enforcement`, ...) stay strings here so that validation can name the
//! field and list the accepted values; [`crate::validate`] turns them into
//! typed values. Serializing a document gives back YAML or JSON with the same
//! key names, omitting unset values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn is_false(value: &bool) -> bool {
    !*value
}

/// The top-level policy document.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem_policy: Option<FilesystemDocument>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock: Option<LandlockDocument>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessDocument>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub network_policies: BTreeMap<String, NetworkPolicyDocument>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub network_middlewares: BTreeMap<String, MiddlewareDocument>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_workdir: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_write: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LandlockDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicyDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<EndpointDocument>,
    #[serde(default)]
    pub binaries: Vec<BinaryDocument>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BinaryDocument {
    pub path: String,
    /// `false`: only the calling executable itself may match, not one of
    /// its ancestors (default `true`; docs/policy.md, "Binaries").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestors: Option<bool>,
    /// Legacy key, accepted and ignored.
    #[serde(default, skip_serializing)]
    pub harness: Option<bool>,
}

/// One endpoint of a network policy entry (docs/policy.md, "Endpoints").
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointDocument {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tls: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub enforcement: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub access: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<AllowRuleDocument>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_rules: Option<Vec<RuleBodyDocument>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_encoded_slash: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub websocket_credential_rewrite: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub request_body_credential_rewrite: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_uninspected_credentials: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential_signing: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signing_service: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signing_region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_binding: Option<CredentialBindingDocument>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub persisted_queries: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub graphql_persisted_queries: BTreeMap<String, PersistedQueryDocument>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphql_max_body_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_rpc: Option<JsonRpcDocument>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpDocument>,
}

impl EndpointDocument {
    /// Names of the set fields that only make sense for inspected (L7) protocols.
    pub fn l7_only_fields(&self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        let mut add = |set: bool, name: &'static str| {
            if set {
                fields.push(name);
            }
        };
        add(!self.enforcement.is_empty(), "enforcement");
        add(!self.path.is_empty(), "path");
        add(self.allow_encoded_slash, "allow_encoded_slash");
        add(
            self.websocket_credential_rewrite,
            "websocket_credential_rewrite",
        );
        add(
            self.request_body_credential_rewrite,
            "request_body_credential_rewrite",
        );
        add(!self.persisted_queries.is_empty(), "persisted_queries");
        add(
            !self.graphql_persisted_queries.is_empty(),
            "graphql_persisted_queries",
        );
        add(
            self.graphql_max_body_bytes.is_some(),
            "graphql_max_body_bytes",
        );
        add(self.json_rpc.is_some(), "json_rpc_max_body_bytes");
        add(self.mcp.is_some(), "mcp");
        add(!self.credential_signing.is_empty(), "credential_signing");
        add(!self.signing_service.is_empty(), "signing_service");
        add(!self.signing_region.is_empty(), "signing_region");
        add(self.credential_binding.is_some(), "credential_binding");
        fields
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialBindingDocument {
    pub provider: String,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PersistedQueryDocument {
    pub operation_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JsonRpcDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct McpDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_tool_names: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_all_known_mcp_methods: Option<bool>,
}

/// An item of `rules`: the body sits under `allow`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRuleDocument {
    pub allow: RuleBodyDocument,
}

/// The body shared by allow and deny rules, for every protocol (docs/policy.md, "Rules").
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleBodyDocument {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, MatcherDocument>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operation_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operation_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<MatcherDocument>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, MatcherDocument>,
}

impl RuleBodyDocument {
    /// True when the body sets no field at all.
    pub fn is_empty(&self) -> bool {
        self == &RuleBodyDocument::default()
    }

    /// True when the body uses a GraphQL operation matcher.
    pub fn has_graphql_fields(&self) -> bool {
        !self.operation_type.is_empty() || !self.operation_name.is_empty() || self.fields.is_some()
    }

    /// True when the body uses an HTTP request matcher.
    pub fn has_http_fields(&self) -> bool {
        !self.method.is_empty() || !self.path.is_empty() || !self.query.is_empty()
    }
}

/// A value matcher: one glob, or `{any: [globs]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MatcherDocument {
    Glob(String),
    Any(AnyMatcherDocument),
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnyMatcherDocument {
    pub any: Vec<String>,
}

impl<'de> Deserialize<'de> for MatcherDocument {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MatcherVisitor;

        impl<'de> serde::de::Visitor<'de> for MatcherVisitor {
            type Value = MatcherDocument;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a glob string or `{any: [globs]}`")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MatcherDocument::Glob(v.to_owned()))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(MatcherDocument::Glob(v.to_string()))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(MatcherDocument::Glob(v.to_string()))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(MatcherDocument::Glob(v.to_string()))
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(MatcherDocument::Glob(v.to_string()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let any = AnyMatcherDocument::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(MatcherDocument::Any(any))
            }
        }

        deserializer.deserialize_any(MatcherVisitor)
    }
}

impl MatcherDocument {
    pub fn globs(&self) -> &[String] {
        match self {
            MatcherDocument::Glob(glob) => std::slice::from_ref(glob),
            MatcherDocument::Any(any) => &any.any,
        }
    }
}

/// One `network_middlewares` entry (docs/policy.md, "Middlewares and overlap").
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MiddlewareDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub middleware: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub on_error: String,
    pub endpoints: MiddlewareSelectorDocument,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MiddlewareSelectorDocument {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}
