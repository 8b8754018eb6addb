//! Where OpenShell keeps configuration and state (docs/cli.md, "Files").
//!
//! Resolution follows the XDG base directory rules: `$XDG_CONFIG_HOME` or
//! `~/.config`, `$XDG_STATE_HOME` or `~/.local/state`, with `openshell`
//! appended. Relative XDG values are ignored, as the XDG spec requires.

use std::path::{Path, PathBuf};

/// Why a base directory could not be determined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot determine the {kind} directory: neither ${xdg_var} nor $HOME is set to an absolute path"
)]
pub struct ResolveDirError {
    kind: &'static str,
    xdg_var: &'static str,
}

/// The environment a path lookup reads; a trait so tests need no real environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

fn base_dir(
    env: &dyn Env,
    xdg_var: &'static str,
    home_suffix: &str,
    kind: &'static str,
) -> Result<PathBuf, ResolveDirError> {
    if let Some(dir) = env.var(xdg_var).filter(|d| Path::new(d).is_absolute()) {
        return Ok(PathBuf::from(dir).join("openshell"));
    }
    match env.var("HOME").filter(|d| Path::new(d).is_absolute()) {
        Some(home) => Ok(PathBuf::from(home).join(home_suffix).join("openshell")),
        None => Err(ResolveDirError { kind, xdg_var }),
    }
}

/// `${XDG_CONFIG_HOME:-~/.config}/openshell`
pub fn config_dir(env: &dyn Env) -> Result<PathBuf, ResolveDirError> {
    base_dir(env, "XDG_CONFIG_HOME", ".config", "config")
}

/// `${XDG_STATE_HOME:-~/.local/state}/openshell`
pub fn state_dir(env: &dyn Env) -> Result<PathBuf, ResolveDirError> {
    base_dir(env, "XDG_STATE_HOME", ".local/state", "state")
}

/// Another OpenShell binary: `name` beside the running one (a build or an
/// install puts them together), else `name` to be found on `PATH`.
pub fn companion_binary(name: &str) -> PathBuf {
    if let Ok(me) = std::env::current_exe()
        && let Some(dir) = me.parent()
        && dir.join(name).is_file()
    {
        return dir.join(name);
    }
    PathBuf::from(name)
}

/// The socket named by `var` when it holds `unix://PATH`.
fn unix_socket(env: &dyn Env, var: &str) -> Option<PathBuf> {
    env.var(var)
        .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
}

/// The Docker Engine's API socket: `DOCKER_HOST` when it names a unix
/// socket, else `/var/run/docker.sock`.
pub fn docker_socket(env: &dyn Env) -> PathBuf {
    unix_socket(env, "DOCKER_HOST").unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// Podman's API socket (`podman system service`): `CONTAINER_HOST` when
/// it names a unix socket, else root's `/run/podman/podman.sock` or a
/// user's `$XDG_RUNTIME_DIR/podman/podman.sock`.
pub fn podman_socket(env: &dyn Env, uid: u32) -> PathBuf {
    if let Some(socket) = unix_socket(env, "CONTAINER_HOST") {
        return socket;
    }
    if uid == 0 {
        return PathBuf::from("/run/podman/podman.sock");
    }
    let runtime = env
        .var("XDG_RUNTIME_DIR")
        .unwrap_or_else(|| format!("/run/user/{uid}"));
    PathBuf::from(runtime).join("podman/podman.sock")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct FakeEnv(HashMap<&'static str, &'static str>);

    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    #[test]
    fn engine_sockets_come_from_their_variables_when_they_name_unix_sockets() {
        let none = FakeEnv(HashMap::new());
        assert_eq!(docker_socket(&none), PathBuf::from("/var/run/docker.sock"));
        assert_eq!(
            podman_socket(&none, 0),
            PathBuf::from("/run/podman/podman.sock")
        );
        assert_eq!(
            podman_socket(&none, 1000),
            PathBuf::from("/run/user/1000/podman/podman.sock")
        );
        let set = FakeEnv(HashMap::from([
            ("DOCKER_HOST", "unix:///tmp/d.sock"),
            ("CONTAINER_HOST", "unix:///tmp/p.sock"),
        ]));
        assert_eq!(docker_socket(&set), PathBuf::from("/tmp/d.sock"));
        assert_eq!(podman_socket(&set, 1000), PathBuf::from("/tmp/p.sock"));
        let tcp = FakeEnv(HashMap::from([("DOCKER_HOST", "tcp://10.0.0.1:2375")]));
        assert_eq!(docker_socket(&tcp), PathBuf::from("/var/run/docker.sock"));
    }

    #[test]
    fn xdg_variables_win_over_home() {
        let env = FakeEnv(HashMap::from([
            ("HOME", "/home/u"),
            ("XDG_CONFIG_HOME", "/cfg"),
            ("XDG_STATE_HOME", "/st"),
        ]));
        assert_eq!(config_dir(&env).unwrap(), PathBuf::from("/cfg/openshell"));
        assert_eq!(state_dir(&env).unwrap(), PathBuf::from("/st/openshell"));
    }

    #[test]
    fn falls_back_to_home_and_ignores_relative_xdg() {
        let env = FakeEnv(HashMap::from([
            ("HOME", "/home/u"),
            ("XDG_CONFIG_HOME", "rel"),
        ]));
        assert_eq!(
            config_dir(&env).unwrap(),
            PathBuf::from("/home/u/.config/openshell")
        );
        assert_eq!(
            state_dir(&env).unwrap(),
            PathBuf::from("/home/u/.local/state/openshell")
        );
    }

    #[test]
    fn no_home_is_an_error_naming_the_variable() {
        let env = FakeEnv(HashMap::new());
        let err = config_dir(&env).unwrap_err();
        assert!(err.to_string().contains("$XDG_CONFIG_HOME"), "{err}");
    }
}
