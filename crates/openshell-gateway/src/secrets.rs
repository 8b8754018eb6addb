//! Secrets at rest (docs/providers.md, "At rest"): provider credentials are
//! sealed with ChaCha20-Poly1305 under a key kept in
//! `STATE_DIR/secrets.key` (0600), never in the database. The sealed form
//! names its key, so a rotation re-seals every row under a new key while
//! the old one still opens what is not re-sealed yet.
//!
//! The key file holds one `<id> <64 hex>` line per key, the active one
//! first. Each sealed value is bound to the row it belongs to (the
//! provider id is the AEAD's associated data), so a value copied onto
//! another row does not open.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openshell_core::hex;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The key file in the state directory.
pub const KEY_FILE: &str = "secrets.key";
const SEALED_PREFIX: &str = "v1";

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading or writing the key file {path}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key file {0} is malformed")]
    Malformed(PathBuf),
    #[error("a sealed secret names key '{0}', which the key file does not hold")]
    UnknownKey(String),
    #[error("a sealed secret does not open (damaged, or sealed for another row)")]
    Damaged,
    #[error("no system randomness")]
    Random,
}

struct Key {
    id: String,
    key: LessSafeKey,
    raw: [u8; 32],
}

/// The gateway's secret keys.
#[derive(Clone)]
pub struct Keyring {
    path: PathBuf,
    keys: Arc<RwLock<Vec<Key>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SecretError::Random)?;
    Ok(bytes)
}

fn new_key() -> Result<Key, SecretError> {
    let raw = random::<32>()?;
    let id = hex::encode(&random::<4>()?);
    Ok(Key {
        key: LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, &raw).map_err(|_| SecretError::Random)?,
        ),
        id,
        raw,
    })
}

impl Keyring {
    /// The keys in `state_dir`, a new one created (0600) on first use.
    pub fn load_or_create(state_dir: &Path) -> Result<Keyring, SecretError> {
        let path = state_dir.join(KEY_FILE);
        let keyring = Keyring {
            path: path.clone(),
            keys: Arc::default(),
        };
        if path.exists() {
            keyring.reload()?;
        } else {
            keyring.write(vec![new_key()?])?;
        }
        Ok(keyring)
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> SecretError + '_ {
        |source| SecretError::KeyFile {
            path: self.path.clone(),
            source,
        }
    }

    fn reload(&self) -> Result<(), SecretError> {
        let text = std::fs::read_to_string(&self.path).map_err(self.io())?;
        let mut keys = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let malformed = || SecretError::Malformed(self.path.clone());
            let (id, material) = line.trim().split_once(' ').ok_or_else(malformed)?;
            let raw: [u8; 32] = hex::decode(material)
                .and_then(|m| m.try_into().ok())
                .ok_or_else(malformed)?;
            keys.push(Key {
                id: id.to_owned(),
                key: LessSafeKey::new(
                    UnboundKey::new(&CHACHA20_POLY1305, &raw).map_err(|_| malformed())?,
                ),
                raw,
            });
        }
        if keys.is_empty() {
            return Err(SecretError::Malformed(self.path.clone()));
        }
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    /// Replaces the key file atomically (0600), then the keys in memory.
    fn write(&self, keys: Vec<Key>) -> Result<(), SecretError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text: String = keys
            .iter()
            .map(|k| format!("{} {}\n", k.id, hex::encode(&k.raw)))
            .collect();
        let temporary = self.path.with_extension("key.new");
        let _ = std::fs::remove_file(&temporary);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(self.io())?;
        file.write_all(text.as_bytes()).map_err(self.io())?;
        file.sync_all().map_err(self.io())?;
        std::fs::rename(&temporary, &self.path).map_err(self.io())?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    /// Seals `plaintext` for the row `row` under the active key:
    /// `v1.<key id>.<hex nonce and ciphertext>`.
    pub fn seal(&self, row: &str, plaintext: &[u8]) -> Result<String, SecretError> {
        // The file first: a rotation by another process may have made a
        // new key active, and sealing under a retired one would lose this.
        self.reload()?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let active = keys.first().ok_or(SecretError::Random)?;
        let nonce = random::<NONCE_LEN>()?;
        let mut sealed = plaintext.to_vec();
        active
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(row.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| SecretError::Damaged)?;
        Ok(format!(
            "{SEALED_PREFIX}.{}.{}{}",
            active.id,
            hex::encode(&nonce),
            hex::encode(&sealed)
        ))
    }

    /// Opens what [`seal`](Self::seal) made for `row`. A key id the file
    /// did not hold when loaded is looked for once more (another process
    /// rotated).
    pub fn open(&self, row: &str, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(SEALED_PREFIX), Some(id), Some(body)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretError::Damaged);
        };
        let body = hex::decode(body).ok_or(SecretError::Damaged)?;
        if body.len() < NONCE_LEN {
            return Err(SecretError::Damaged);
        }
        let known = |keys: &[Key]| keys.iter().any(|k| k.id == id);
        if !known(&self.keys.read().unwrap_or_else(|e| e.into_inner())) {
            self.reload()?;
        }
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SecretError::UnknownKey(id.to_owned()))?;
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Damaged)?;
        let mut buffer = ciphertext.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(row.as_bytes()), &mut buffer)
            .map_err(|_| SecretError::Damaged)?;
        Ok(plain.to_vec())
    }

    /// Step one of a rotation: a new active key, the old ones kept to open
    /// what is still sealed under them. Returns the new key's id.
    pub fn add_active_key(&self) -> Result<String, SecretError> {
        let key = new_key()?;
        let id = key.id.clone();
        let mut keys: Vec<Key> = vec![key];
        for old in self.keys.read().unwrap_or_else(|e| e.into_inner()).iter() {
            keys.push(Key {
                id: old.id.clone(),
                key: LessSafeKey::new(
                    UnboundKey::new(&CHACHA20_POLY1305, &old.raw)
                        .map_err(|_| SecretError::Random)?,
                ),
                raw: old.raw,
            });
        }
        self.write(keys)?;
        Ok(id)
    }

    /// Step two, once every row is re-sealed: the active key stays, with
    /// the one before it (a write that raced the rotation may have sealed
    /// under it; the next rotation re-seals that too); older ones go.
    pub fn retire_old_keys(&self) -> Result<(), SecretError> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let mut kept = Vec::new();
        for key in keys.iter().take(2) {
            kept.push(Key {
                id: key.id.clone(),
                key: LessSafeKey::new(
                    UnboundKey::new(&CHACHA20_POLY1305, &key.raw)
                        .map_err(|_| SecretError::Random)?,
                ),
                raw: key.raw,
            });
        }
        drop(keys);
        self.write(kept)
    }

    /// Whether `sealed` is sealed under the active key.
    pub fn is_current(&self, sealed: &str) -> bool {
        let active = self.active_id();
        sealed
            .split('.')
            .nth(1)
            .is_some_and(|id| !active.is_empty() && id == active)
    }

    /// The active key's id.
    pub fn active_id(&self) -> String {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .map(|k| k.id.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_row_and_survive_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::load_or_create(dir.path()).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let sealed = keyring.seal("row-1", b"sk-secret").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(keyring.open("row-1", &sealed).unwrap(), b"sk-secret");
        assert!(matches!(
            keyring.open("row-2", &sealed),
            Err(SecretError::Damaged)
        ));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('0') { '1' } else { '0' });
        assert!(keyring.open("row-1", &tampered).is_err());

        // Another process (the rotation command) adds a key: this one
        // still opens both old and new sealed values.
        let other = Keyring::load_or_create(dir.path()).unwrap();
        let old_id = other.active_id();
        let new_id = other.add_active_key().unwrap();
        assert_ne!(old_id, new_id);
        let resealed = other.seal("row-1", b"sk-secret").unwrap();
        assert_eq!(keyring.open("row-1", &resealed).unwrap(), b"sk-secret");
        assert_eq!(keyring.open("row-1", &sealed).unwrap(), b"sk-secret");
        other.retire_old_keys().unwrap();
        // The previous key stays for one more rotation.
        let fresh = Keyring::load_or_create(dir.path()).unwrap();
        assert_eq!(fresh.open("row-1", &sealed).unwrap(), b"sk-secret");
        other.add_active_key().unwrap();
        other.retire_old_keys().unwrap();
        let fresh = Keyring::load_or_create(dir.path()).unwrap();
        assert!(matches!(
            fresh.open("row-1", &sealed),
            Err(SecretError::UnknownKey(id)) if id == old_id
        ));
        assert_eq!(fresh.open("row-1", &resealed).unwrap(), b"sk-secret");
    }
}
