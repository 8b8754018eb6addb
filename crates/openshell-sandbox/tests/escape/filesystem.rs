//! Landlock and the private root: files outside the policy stay out of
//! reach, by any path.

use crate::support::{sandbox, shared_dir};

/// A secret on the host that no policy lists.
struct Secret {
    path: std::path::PathBuf,
}

impl Secret {
    fn new(tag: &str) -> Secret {
        let path = std::path::PathBuf::from(format!(
            "/root/openshell-escape-{tag}-{}",
            std::process::id()
        ));
        std::fs::write(&path, "TOP-SECRET-VALUE\n").unwrap();
        Secret { path }
    }
    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn reading_a_secret_outside_the_allowed_paths_fails() {
    let secret = Secret::new("read");
    let outcome = sandbox().run(&["cat", secret.path()]);
    assert_ne!(outcome.code, 0);
    assert!(outcome.stderr.contains("Permission denied"), "{outcome:#?}");
    assert!(!outcome.stdout.contains("TOP-SECRET"));
}

#[test]
fn reading_the_secret_through_proc_root_or_a_symlink_fails() {
    let secret = Secret::new("indirect");
    let dir = shared_dir();
    std::os::unix::fs::symlink(secret.path(), dir.path().join("link")).unwrap();
    let script = format!(
        "cat /proc/self/root{p}; cat /proc/1/root{p}; cat /sandbox/link; echo done",
        p = secret.path()
    );
    let outcome = sandbox().workdir(dir.path()).sh(&script);
    assert!(!outcome.stdout.contains("TOP-SECRET"), "{outcome:#?}");
    assert_eq!(outcome.stdout.trim(), "done");
}

#[test]
fn a_hard_link_cannot_carry_a_read_only_file_into_the_workspace() {
    let dir = shared_dir();
    let outcome = sandbox()
        .workdir(dir.path())
        .sh("ln /etc/hostname /sandbox/hostname");
    assert_ne!(outcome.code, 0, "{outcome:#?}");
    assert!(!dir.path().join("hostname").exists());
}

#[test]
fn writing_under_usr_or_the_root_fails() {
    let name = format!("openshell-escape-{}", std::process::id());
    let script = format!("touch /usr/{name}; touch /{name}; mkdir /etc/{name}; echo done");
    let outcome = sandbox().sh(&script);
    assert_eq!(outcome.stdout.trim(), "done");
    assert_eq!(
        outcome.stderr.matches("Permission denied").count()
            + outcome.stderr.matches("Read-only file system").count(),
        3,
        "{outcome:#?}"
    );
    assert!(!std::path::Path::new(&format!("/usr/{name}")).exists());
    assert!(!std::path::Path::new(&format!("/{name}")).exists());
    assert!(!std::path::Path::new(&format!("/etc/{name}")).exists());
}

#[test]
fn the_sandbox_tmp_is_private() {
    let marker = std::env::temp_dir().join(format!("openshell-host-tmp-{}", std::process::id()));
    std::fs::write(&marker, "host").unwrap();
    let script = format!(
        "test -e {m} && echo visible; echo x > /tmp/from-sandbox; echo done",
        m = marker.display()
    );
    let outcome = sandbox().sh(&script).success();
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(outcome.stdout.trim(), "done");
    assert!(!std::path::Path::new("/tmp/from-sandbox").exists());
}

#[test]
fn read_only_policy_paths_are_readable_but_not_writable() {
    let dir = shared_dir();
    // Under /var/lib: not /tmp, /var/tmp or /run, which are private in the
    // sandbox (the checkout itself may live under /tmp).
    let data = tempfile::Builder::new()
        .prefix("openshell-escape-")
        .tempdir_in("/var/lib")
        .unwrap();
    std::fs::write(data.path().join("f"), "data\n").unwrap();
    std::fs::set_permissions(
        data.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::set_permissions(
        data.path().join("f"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let policy = format!(
        "version: 1\nfilesystem_policy:\n  include_workdir: true\n  read_only: [/usr, /lib, /lib64, /bin, /etc, {d}]\n  read_write: [/tmp]\n",
        d = data.path().display()
    );
    let script = format!(
        "cat {d}/f; echo more >> {d}/f; touch {d}/new; echo done",
        d = data.path().display()
    );
    let outcome = sandbox().policy(&policy).workdir(dir.path()).sh(&script);
    assert_eq!(outcome.stdout, "data\ndone\n", "{outcome:#?}");
    assert_eq!(
        std::fs::read_to_string(data.path().join("f")).unwrap(),
        "data\n"
    );
    assert!(!data.path().join("new").exists());
}

/// Escape: a policy path inside the agent's workspace replaced by a link to
/// `/` (`ln -s / /sandbox/data`). Rule paths are opened as root at every
/// launch and exec; following the link granted the whole root.
#[test]
fn a_policy_path_the_agent_replaced_by_a_link_is_refused_not_widened() {
    let dir = shared_dir();
    // World-readable, outside every policy path: only Landlock keeps it out.
    let outside = tempfile::Builder::new()
        .prefix("openshell-escape-")
        .tempdir_in("/var/lib")
        .unwrap();
    std::fs::set_permissions(
        outside.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(outside.path().join("secret"), "TOP-SECRET-VALUE\n").unwrap();
    // What the agent leaves behind: a link it owns where the policy names a
    // directory of the workspace.
    let planted = dir.path().join("data");
    std::os::unix::fs::symlink("/", &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(65534), Some(65534)).unwrap();
    let policy = "version: 1\nfilesystem_policy:\n  include_workdir: true\n  read_only: [/usr, /lib, /lib64, /bin, /etc, /sandbox/data]\n  read_write: [/tmp]\n";
    let script = format!("cat {}/secret; echo done", outside.path().display());
    let outcome = sandbox().policy(policy).workdir(dir.path()).sh(&script);
    assert!(!outcome.stdout.contains("TOP-SECRET"), "{outcome:#?}");
    assert_eq!(outcome.stdout.trim(), "done", "{outcome:#?}");
    assert!(outcome.stderr.contains("Permission denied"), "{outcome:#?}");
    assert!(
        outcome.stderr.contains("/sandbox/data is a symbolic link"),
        "the refusal must be reported: {outcome:#?}"
    );
}
