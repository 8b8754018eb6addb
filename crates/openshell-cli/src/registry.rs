//! The gateway registry on disk (docs/cli.md, "Files"):
//! `${XDG_CONFIG_HOME:-~/.config}/openshell/active_gateway` and
//! `gateways/<name>/{metadata.json, mtls/{ca.crt,tls.crt,tls.key}}`. A
//! registration written by hand works exactly like one written here.

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
}

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
}

/// The registry rooted at a config directory.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
}

/// A gateway name must be one path component.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        bail!("invalid gateway name '{name}': it must be a single path component");
    }
    Ok(())
}

impl Registry {
    pub fn new(config_dir: &Path) -> Registry {
        Registry {
            root: config_dir.to_owned(),
        }
    }

    /// The registry of this user (`$XDG_CONFIG_HOME/openshell`).
    pub fn for_user() -> anyhow::Result<Registry> {
        Ok(Registry::new(&openshell_core::paths::config_dir(
            &openshell_core::paths::ProcessEnv,
        )?))
    }

    pub fn gateway_dir(&self, name: &str) -> PathBuf {
        self.root.join("gateways").join(name)
    }

    pub fn mtls_dir(&self, name: &str) -> PathBuf {
        self.gateway_dir(name).join("mtls")
    }

    pub fn load(&self, name: &str) -> anyhow::Result<Option<Metadata>> {
        check_name(name)?;
        let path = self.gateway_dir(name).join("metadata.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("reading {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, metadata: &Metadata) -> anyhow::Result<()> {
        check_name(&metadata.name)?;
        let dir = self.gateway_dir(&metadata.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("metadata.json");
        let text = serde_json::to_string_pretty(metadata)?;
        write_atomically(&path, text.as_bytes(), 0o644)
    }

    /// Every registration, by name.
    pub fn list(&self) -> anyhow::Result<Vec<Metadata>> {
        let mut all = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.root.join("gateways")) else {
            return Ok(all);
        };
        for entry in entries.flatten() {
            if let Some(name) = entry.file_name().to_str()
                && let Ok(Some(metadata)) = self.load(name)
            {
                all.push(metadata);
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    pub fn active(&self) -> Option<String> {
        std::fs::read_to_string(self.root.join("active_gateway"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
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

    /// Deletes a registration; clears `active_gateway` when it named it.
    pub fn remove(&self, name: &str) -> anyhow::Result<bool> {
        check_name(name)?;
        let dir = self.gateway_dir(name);
        if !dir.exists() {
            return Ok(false);
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
            let mtls_dir = known.map_or_else(PathBuf::new, |m| self.mtls_dir(&m.name));
            return Ok(Some(Target {
                name,
                endpoint,
                auth,
                mtls_dir,
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
            mtls_dir: self.mtls_dir(&name),
            name,
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
}
