//! The gateway registry on disk (docs/cli.md, "Files"):
//! `${XDG_CONFIG_HOME:-~/.config}/openshell/active_gateway` and
//! `gateways/<name>/{metadata.json, mtls/{ca.crt,tls.crt,tls.key}, edge_token}`.
//! A registration written by hand works exactly like one written here.
//!
//! Beside the user's registry, a read-only system registry of the same
//! layout (`$OPENSHELL_SYSTEM_GATEWAY_DIR`, default `/etc/openshell`) holds
//! gateways a package installed: they are listed with SOURCE `system`, a
//! user entry of the same name shadows them, and they cannot be removed
//! from user config. A user's token for a system gateway lives in the
//! user's registry.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// `metadata.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    pub gateway_endpoint: String,
    #[serde(default)]
    pub is_remote: bool,
    #[serde(default)]
    pub gateway_port: u16,
    /// `mtls` (default when absent), `plaintext` or `bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
    /// Which registry it was read from (not stored).
    #[serde(skip)]
    pub source: Source,
}

/// Which registry holds a registration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Source {
    #[default]
    User,
    /// The read-only system registry.
    System,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::User => "user",
            Source::System => "system",
        }
    }
}

/// The system registry's default root.
pub const SYSTEM_GATEWAY_DIR: &str = "/etc/openshell";

/// The user token of a bearer gateway, in its directory.
pub const TOKEN_FILE: &str = "edge_token";

impl Metadata {
    /// The auth mode, defaulting as docs/cli.md ("Files") says (from the scheme when unset).
    pub fn auth(&self) -> &str {
        match self.auth_mode.as_deref() {
            Some(mode) => mode,
            None if self.gateway_endpoint.starts_with("http://") => "plaintext",
            None => "mtls",
        }
    }
}

/// A gateway to talk to, resolved from flags, environment and files.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub endpoint: String,
    pub auth: String,
    /// The client bundle directory (for mTLS).
    pub mtls_dir: PathBuf,
    /// The user token of a bearer gateway, once logged in.
    pub token: Option<String>,
    /// `--gateway-insecure`: do not verify the server's certificate.
    pub insecure: bool,
}

/// The registry rooted at a config directory, over a read-only system one.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
    system: Option<PathBuf>,
}

/// A gateway name must be one path component.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        bail!("invalid gateway name '{name}': it must be a single path component");
    }
    Ok(())
}

impl Registry {
    /// A user registry without a system one.
    #[cfg(test)]
    pub fn new(config_dir: &Path) -> Registry {
        Registry {
            root: config_dir.to_owned(),
            system: None,
        }
    }

    /// A user registry over the system registry at `system`.
    pub fn with_system(config_dir: &Path, system: &Path) -> Registry {
        Registry {
            root: config_dir.to_owned(),
            system: Some(system.to_owned()),
        }
    }

    /// The registry of this user (`$XDG_CONFIG_HOME/openshell`) over the
    /// system one (`$OPENSHELL_SYSTEM_GATEWAY_DIR` when set to an absolute
    /// path, else `/etc/openshell`).
    pub fn for_user() -> anyhow::Result<Registry> {
        let system = std::env::var_os("OPENSHELL_SYSTEM_GATEWAY_DIR")
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute())
            .unwrap_or_else(|| PathBuf::from(SYSTEM_GATEWAY_DIR));
        Ok(Registry::with_system(
            &openshell_core::paths::config_dir(&openshell_core::paths::ProcessEnv)?,
            &system,
        ))
    }

    /// The user's directory of a gateway (where `add`, `login` and
    /// `last_sandbox` write).
    pub fn gateway_dir(&self, name: &str) -> PathBuf {
        self.root.join("gateways").join(name)
    }

    pub fn mtls_dir(&self, name: &str) -> PathBuf {
        self.gateway_dir(name).join("mtls")
    }

    /// The registries to read, the user's first.
    fn roots(&self) -> impl Iterator<Item = (Source, &Path)> {
        std::iter::once((Source::User, self.root.as_path())).chain(
            self.system
                .as_deref()
                .map(|system| (Source::System, system)),
        )
    }

    /// The client bundle directory of a registration, in the registry that holds it.
    pub fn bundle_dir(&self, metadata: &Metadata) -> PathBuf {
        match (metadata.source, &self.system) {
            (Source::System, Some(system)) => {
                system.join("gateways").join(&metadata.name).join("mtls")
            }
            _ => self.mtls_dir(&metadata.name),
        }
    }

    /// The user's token for a gateway, if logged in.
    pub fn token(&self, name: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.gateway_dir(name).join(TOKEN_FILE)).ok()?;
        Some(text.trim().to_owned()).filter(|t| !t.is_empty())
    }

    /// Stores the user's token for a gateway (0600).
    pub fn set_token(&self, name: &str, token: &str) -> anyhow::Result<()> {
        check_name(name)?;
        let dir = self.gateway_dir(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomically(
            &dir.join(TOKEN_FILE),
            format!("{token}\n").as_bytes(),
            0o600,
        )
    }

    /// Forgets the user's token for a gateway; false when there was none.
    pub fn remove_token(&self, name: &str) -> anyhow::Result<bool> {
        check_name(name)?;
        match std::fs::remove_file(self.gateway_dir(name).join(TOKEN_FILE)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).context("removing the stored token"),
        }
    }

    /// A registration: the user's, else the system's.
    pub fn load(&self, name: &str) -> anyhow::Result<Option<Metadata>> {
        check_name(name)?;
        for (source, root) in self.roots() {
            let path = root.join("gateways").join(name).join("metadata.json");
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let mut metadata: Metadata = serde_json::from_str(&text)
                        .with_context(|| format!("reading {}", path.display()))?;
                    metadata.source = source;
                    return Ok(Some(metadata));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
        Ok(None)
    }

    pub fn save(&self, metadata: &Metadata) -> anyhow::Result<()> {
        check_name(&metadata.name)?;
        let dir = self.gateway_dir(&metadata.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("metadata.json");
        let text = serde_json::to_string_pretty(metadata)?;
        write_atomically(&path, text.as_bytes(), 0o644)
    }

    /// Every registration, by name (a user entry shadows a system one).
    pub fn list(&self) -> anyhow::Result<Vec<Metadata>> {
        let mut names = std::collections::BTreeSet::new();
        for (_, root) in self.roots() {
            let Ok(entries) = std::fs::read_dir(root.join("gateways")) else {
                continue;
            };
            names.extend(
                entries
                    .flatten()
                    .filter_map(|entry| entry.file_name().to_str().map(str::to_owned)),
            );
        }
        Ok(names
            .iter()
            .filter_map(|name| self.load(name).ok().flatten())
            .collect())
    }

    /// The active gateway: the user's choice, else the system's.
    pub fn active(&self) -> Option<String> {
        self.roots().find_map(|(_, root)| {
            std::fs::read_to_string(root.join("active_gateway"))
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
    }

    pub fn set_active(&self, name: &str) -> anyhow::Result<()> {
        check_name(name)?;
        std::fs::create_dir_all(&self.root)?;
        write_atomically(
            &self.root.join("active_gateway"),
            format!("{name}\n").as_bytes(),
            0o644,
        )
    }

    /// The sandbox last created in `workspace` through `gateway`
    /// (`gateways/<gateway>/last_sandbox`: `<workspace>\n<sandbox>`).
    pub fn last_sandbox(&self, gateway: &str, workspace: &str) -> Option<String> {
        check_name(gateway).ok()?;
        let text = std::fs::read_to_string(self.gateway_dir(gateway).join("last_sandbox")).ok()?;
        let mut lines = text.lines();
        (lines.next()?.trim() == workspace)
            .then(|| lines.next().map(|s| s.trim().to_owned()))
            .flatten()
            .filter(|s| !s.is_empty())
    }

    /// Remembers the sandbox for [`Registry::last_sandbox`] (only for a
    /// registered gateway).
    pub fn set_last_sandbox(
        &self,
        gateway: &str,
        workspace: &str,
        sandbox: &str,
    ) -> anyhow::Result<()> {
        if check_name(gateway).is_err() || !self.gateway_dir(gateway).is_dir() {
            return Ok(());
        }
        write_atomically(
            &self.gateway_dir(gateway).join("last_sandbox"),
            format!("{workspace}\n{sandbox}\n").as_bytes(),
            0o644,
        )
    }

    /// Deletes a user registration; clears `active_gateway` when it named
    /// it. A system registration is refused.
    pub fn remove(&self, name: &str) -> anyhow::Result<bool> {
        check_name(name)?;
        let dir = self.gateway_dir(name);
        if !dir.join("metadata.json").exists() {
            if self.load(name)?.is_some_and(|m| m.source == Source::System) {
                bail!(
                    "Gateway '{name}' is installed by the system and cannot be removed from user config.\nSelect another one with: openshell gateway select <name>"
                );
            }
            if !dir.exists() {
                return Ok(false);
            }
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        if self.active().as_deref() == Some(name) {
            let _ = std::fs::remove_file(self.root.join("active_gateway"));
        }
        Ok(true)
    }

    /// Copies a client bundle (`ca.crt`, `tls.crt`, `tls.key`) into
    /// `gateways/<name>/mtls/`, the key 0600.
    pub fn store_bundle(
        &self,
        name: &str,
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> anyhow::Result<()> {
        let dir = self.mtls_dir(name);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        for (source, file, mode) in [
            (ca, "ca.crt", 0o644),
            (cert, "tls.crt", 0o644),
            (key, "tls.key", 0o600),
        ] {
            let bytes =
                std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
            write_atomically(&dir.join(file), &bytes, mode)?;
        }
        Ok(())
    }

    /// Resolution order (docs/cli.md, "Which gateway"): `--gateway-endpoint` → `-g` →
    /// `OPENSHELL_GATEWAY` (clap fills `-g` from it) → `active_gateway`.
    pub fn resolve(
        &self,
        gateway: Option<&str>,
        endpoint: Option<&str>,
    ) -> anyhow::Result<Option<Target>> {
        if let Some(endpoint) = endpoint {
            let endpoint = if endpoint.contains("://") {
                endpoint.to_owned()
            } else {
                format!("https://{endpoint}")
            };
            let known = self
                .list()?
                .into_iter()
                .find(|m| gateway.is_some_and(|g| g == m.name) || m.gateway_endpoint == endpoint);
            let name = known
                .as_ref()
                .map(|m| m.name.clone())
                .or_else(|| gateway.map(str::to_owned))
                .unwrap_or_else(|| endpoint.clone());
            let auth = if endpoint.starts_with("http://") {
                "plaintext"
            } else {
                "mtls"
            }
            .to_owned();
            let mtls_dir = known
                .as_ref()
                .map_or_else(PathBuf::new, |m| self.bundle_dir(m));
            let auth = known.as_ref().map_or(auth, |m| m.auth().to_owned());
            return Ok(Some(Target {
                token: self.token(&name),
                name,
                endpoint,
                auth,
                mtls_dir,
                insecure: false,
            }));
        }
        let name = match gateway.map(str::to_owned).or_else(|| self.active()) {
            Some(name) => name,
            None => return Ok(None),
        };
        let Some(metadata) = self.load(&name)? else {
            bail!(
                "Unknown gateway '{name}'.\nRegister it first: openshell gateway add <endpoint> --name {name}\nOr list available gateways: openshell gateway select"
            );
        };
        Ok(Some(Target {
            auth: metadata.auth().to_owned(),
            endpoint: metadata.gateway_endpoint.clone(),
            mtls_dir: self.bundle_dir(&metadata),
            token: self.token(&name),
            name,
            insecure: false,
        }))
    }
}

/// Writes via a temporary file and rename, so a crash never leaves half a file.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(name: &str, endpoint: &str) -> Metadata {
        Metadata {
            name: name.into(),
            gateway_endpoint: endpoint.into(),
            is_remote: false,
            gateway_port: 8080,
            auth_mode: None,
            remote_host: None,
            source: Source::User,
        }
    }

    #[test]
    fn resolution_follows_the_documented_order() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(dir.path());
        assert!(registry.resolve(None, None).unwrap().is_none());
        registry
            .save(&metadata("a", "https://127.0.0.1:8080"))
            .unwrap();
        registry
            .save(&metadata("b", "http://127.0.0.1:9090"))
            .unwrap();
        registry.set_active("a").unwrap();
        assert_eq!(registry.resolve(None, None).unwrap().unwrap().name, "a");
        let b = registry.resolve(Some("b"), None).unwrap().unwrap();
        assert_eq!((b.name.as_str(), b.auth.as_str()), ("b", "plaintext"));
        let by_endpoint = registry
            .resolve(None, Some("http://127.0.0.1:9090"))
            .unwrap()
            .unwrap();
        assert_eq!(by_endpoint.name, "b");
        let raw = registry.resolve(None, Some("10.0.0.1:1")).unwrap().unwrap();
        assert_eq!(raw.endpoint, "https://10.0.0.1:1");
        let unknown = registry.resolve(Some("zz"), None).unwrap_err().to_string();
        assert!(unknown.starts_with("Unknown gateway 'zz'."), "{unknown}");
    }

    #[test]
    fn a_hand_written_registration_works_and_remove_clears_active() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("gateways/hand")).unwrap();
        std::fs::write(
            dir.path().join("gateways/hand/metadata.json"),
            r#"{"name":"hand","gateway_endpoint":"https://127.0.0.1:1","is_remote":false,"gateway_port":1}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("active_gateway"), "  hand \n").unwrap();
        let registry = Registry::new(dir.path());
        let target = registry.resolve(None, None).unwrap().unwrap();
        assert_eq!(
            (target.name.as_str(), target.auth.as_str()),
            ("hand", "mtls")
        );
        assert!(registry.remove("hand").unwrap());
        assert!(registry.active().is_none());
        assert!(check_name("../x").is_err());
    }

    #[test]
    fn system_registrations_are_listed_shadowed_and_never_removed() {
        let user = tempfile::tempdir().unwrap();
        let system = tempfile::tempdir().unwrap();
        let registry = Registry::with_system(user.path(), system.path());
        let system_registry = Registry::new(system.path());
        system_registry
            .save(&metadata("corp", "https://10.0.0.9:17670"))
            .unwrap();
        system_registry
            .save(&metadata("both", "https://10.0.0.8:1"))
            .unwrap();
        system_registry.set_active("corp").unwrap();
        registry
            .save(&metadata("both", "http://127.0.0.1:2"))
            .unwrap();

        // The system's active gateway until the user picks one.
        let target = registry.resolve(None, None).unwrap().unwrap();
        assert_eq!(target.name, "corp");
        assert_eq!(target.mtls_dir, system.path().join("gateways/corp/mtls"));
        let sources: Vec<(String, Source)> = registry
            .list()
            .unwrap()
            .into_iter()
            .map(|m| (m.name, m.source))
            .collect();
        assert_eq!(
            sources,
            vec![
                ("both".into(), Source::User),
                ("corp".into(), Source::System)
            ]
        );
        let refused = registry.remove("corp").unwrap_err().to_string();
        assert!(
            refused.contains("installed by the system and cannot be removed from user config"),
            "{refused}"
        );
        assert!(system.path().join("gateways/corp/metadata.json").exists());
        // A token for a system gateway lives with the user.
        registry.set_token("corp", "u1.x").unwrap();
        assert_eq!(registry.token("corp").as_deref(), Some("u1.x"));
        assert_eq!(
            registry.load("corp").unwrap().unwrap().source,
            Source::System
        );
        registry.set_active("both").unwrap();
        assert_eq!(registry.resolve(None, None).unwrap().unwrap().name, "both");
    }
}
