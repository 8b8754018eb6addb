//! The isolation of the agent child as data: a [`Plan`] built purely from
//! the policy and what the supervisor resolved on the host, then applied by
//! short loops in the init process ([`crate::isolation::init`]) and the agent child
//! ([`crate::isolation::agent`]).
//!
//! Order of application (docs/isolation.md, "Order of application"):
//! namespaces → network (loopback + proxy listener, made by the supervisor)
//! → mounts (new root with `/sandbox`, private `/tmp`, fresh `/proc`) →
//! identity drop → hardening → Landlock → seccomp → exec.

pub mod agent;
pub mod identity;
pub mod init;
pub mod join;
pub mod landlock;
pub mod launch;
pub mod layout;
pub mod limits;
pub mod mounts;
pub mod report;
pub mod seccomp;
pub mod sys;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use openshell_policy::Policy;
use openshell_policy::policy::LandlockCompatibility;

pub use identity::Credentials;
pub use landlock::{FsAccess, FsRule};
pub use mounts::{MountStep, RootLayout};

/// Where the workspace appears inside the sandbox.
pub const SANDBOX_DIR: &str = "/sandbox";
/// The proxy's address inside the child's network namespace.
pub const PROXY_ADDR: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, openshell_core::PROXY_PORT);
/// The child's `PATH`.
pub const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The child's hostname (its own UTS namespace).
pub const HOSTNAME: &str = "sandbox";
/// Variables copied from the supervisor's environment when set.
pub const INHERITED_VARS: [&str; 4] = ["TERM", "LANG", "LC_ALL", "TZ"];
/// Proxy variables, all pointing at [`PROXY_ADDR`].
const PROXY_VARS: [&str; 7] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "grpc_proxy",
];
const NO_PROXY: &str = "127.0.0.1,localhost,::1";

/// Everything the init process and the agent child need, decided up front.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub hostname: String,
    /// The host directory bound at [`SANDBOX_DIR`].
    pub workdir: PathBuf,
    pub mounts: Vec<MountStep>,
    pub landlock: LandlockPlan,
    pub credentials: Credentials,
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
    pub cwd: String,
}

/// What Landlock must enforce, and how strictly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockPlan {
    pub hard_requirement: bool,
    pub rules: Vec<FsRule>,
}

/// What the supervisor resolved on the host before building the plan.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub policy: &'a Policy,
    pub workdir: PathBuf,
    pub credentials: Credentials,
    /// What of the host the sandbox's root shows ([`layout::read_layout`]).
    pub layout: RootLayout,
    /// The size cap of the sandbox's `/tmp`.
    pub tmp_size: Option<u64>,
    /// `passwd` and `group` naming the sandbox's own id ([`mounts::Binds`]).
    pub accounts_dir: Option<PathBuf>,
    /// Host directory with the TLS trust files, bound read-only at
    /// [`crate::tls::SANDBOX_TLS_DIR`] (and trusted through the usual
    /// variables) when set.
    pub tls_dir: Option<PathBuf>,
    pub argv: Vec<String>,
    /// `--env` values, applied last.
    pub env_overrides: Vec<(String, String)>,
    /// The supervisor's own environment, for [`INHERITED_VARS`].
    pub host_env: Vec<(String, String)>,
}

/// Builds the plan. Pure: same inputs, same plan.
pub fn build_plan(inputs: Inputs<'_>) -> Plan {
    let mut rules = landlock::build_rules(&inputs.policy.filesystem, SANDBOX_DIR);
    let trust_store = inputs.tls_dir.is_some();
    if trust_store {
        rules.push(FsRule::new(crate::tls::SANDBOX_TLS_DIR, FsAccess::ReadOnly));
    }
    let landlock = LandlockPlan {
        hard_requirement: inputs.policy.landlock == LandlockCompatibility::HardRequirement,
        rules,
    };
    let env = build_env(
        &inputs.credentials,
        &inputs.host_env,
        trust_store,
        &inputs.env_overrides,
    );
    Plan {
        hostname: HOSTNAME.to_owned(),
        mounts: mounts::build_mounts(
            &inputs.layout,
            mounts::Binds {
                workdir: &inputs.workdir,
                tls: inputs.tls_dir.as_deref(),
                tmp_size: inputs.tmp_size,
                accounts: inputs.accounts_dir.as_deref(),
            },
        ),
        landlock,
        env,
        credentials: inputs.credentials,
        workdir: inputs.workdir,
        argv: inputs.argv,
        cwd: SANDBOX_DIR.to_owned(),
    }
}

/// The child's environment: a small fixed base (nothing of the supervisor's
/// leaks unless listed in [`INHERITED_VARS`]), the proxy variables, the
/// trust-store variables (with `trust_store`), then the caller's `--env`
/// values. Later entries override earlier ones.
pub fn build_env(
    credentials: &Credentials,
    host_env: &[(String, String)],
    trust_store: bool,
    overrides: &[(String, String)],
) -> Vec<(String, String)> {
    let user = credentials.user.as_deref().unwrap_or("sandbox");
    let proxy_url = format!("http://{PROXY_ADDR}");
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), CHILD_PATH.into()),
        ("HOME".into(), SANDBOX_DIR.into()),
        ("USER".into(), user.into()),
        ("LOGNAME".into(), user.into()),
        ("HOSTNAME".into(), HOSTNAME.into()),
    ];
    for name in INHERITED_VARS {
        if let Some((_, value)) = host_env.iter().find(|(k, _)| k == name) {
            env.push((name.into(), value.clone()));
        }
    }
    for name in PROXY_VARS {
        env.push((name.into(), proxy_url.clone()));
    }
    env.push(("NO_PROXY".into(), NO_PROXY.into()));
    env.push(("no_proxy".into(), NO_PROXY.into()));
    env.push(("NODE_USE_ENV_PROXY".into(), "1".into()));
    if trust_store {
        env.extend(crate::tls::trust_env());
    }
    for (key, value) in overrides {
        env.retain(|(k, _)| k != key);
        env.push((key.clone(), value.clone()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use openshell_policy::defaults::default_policy;

    fn credentials() -> Credentials {
        Credentials {
            uid: 990,
            gid: 990,
            groups: vec![990],
            user: Some("sandbox".into()),
        }
    }

    fn value<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn env_points_every_proxy_variable_at_the_listener() {
        let env = build_env(&credentials(), &[], false, &[]);
        for name in PROXY_VARS {
            assert_eq!(value(&env, name), Some("http://127.0.0.1:3128"), "{name}");
        }
        assert_eq!(value(&env, "NO_PROXY"), Some("127.0.0.1,localhost,::1"));
        assert_eq!(value(&env, "no_proxy"), Some("127.0.0.1,localhost,::1"));
        assert_eq!(value(&env, "HOME"), Some("/sandbox"));
    }

    #[test]
    fn env_keeps_only_listed_host_variables_and_overrides_win() {
        let host = vec![
            ("TERM".to_owned(), "xterm".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "s3cr3t".to_owned()),
        ];
        let overrides = vec![("HOME".to_owned(), "/tmp".to_owned())];
        let env = build_env(&credentials(), &host, false, &overrides);
        assert_eq!(value(&env, "TERM"), Some("xterm"));
        assert_eq!(value(&env, "AWS_SECRET_ACCESS_KEY"), None);
        assert_eq!(value(&env, "HOME"), Some("/tmp"));
        assert_eq!(env.iter().filter(|(k, _)| k == "HOME").count(), 1);
    }

    #[test]
    fn plan_for_the_default_policy() {
        let policy = default_policy();
        let plan = build_plan(Inputs {
            policy: &policy,
            workdir: "/var/lib/w".into(),
            credentials: credentials(),
            layout: RootLayout::default(),
            tmp_size: None,
            accounts_dir: None,
            tls_dir: Some("/state/tls".into()),
            argv: vec!["/bin/true".into()],
            env_overrides: vec![],
            host_env: vec![],
        });
        assert!(!plan.landlock.hard_requirement);
        assert_eq!(plan.cwd, "/sandbox");
        assert!(
            plan.landlock
                .rules
                .contains(&FsRule::new("/sandbox", FsAccess::ReadWrite))
        );
        assert!(
            plan.landlock
                .rules
                .contains(&FsRule::new("/usr", FsAccess::ReadOnly))
        );
        assert_eq!(plan.credentials.uid, 990);
        assert!(
            plan.landlock
                .rules
                .contains(&FsRule::new("/run/openshell/tls", FsAccess::ReadOnly))
        );
        assert_eq!(
            value(&plan.env, "SSL_CERT_FILE"),
            Some("/run/openshell/tls/ca-bundle.pem")
        );
    }
}
