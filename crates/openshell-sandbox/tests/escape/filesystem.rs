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
    // Unlisted, so absent from the sandbox's root (or, where listed, denied).
    assert!(
        outcome.stderr.contains("No such file or directory")
            || outcome.stderr.contains("Permission denied"),
        "{outcome:#?}"
    );
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

/// Escape: a policy path inside the agent's workspace replaced by a link
/// (`ln -s /elsewhere /sandbox/data`). Rule paths are opened as root at
/// every launch and exec; following the link gave the link's target the
/// rule's access: here read-write on a directory the policy lists
/// read-only.
#[test]
fn a_policy_path_the_agent_replaced_by_a_link_is_refused_not_widened() {
    use std::os::unix::fs::PermissionsExt;
    let dir = shared_dir();
    // Listed read-only; writable by anyone as far as the mode bits go, so
    // only Landlock keeps the agent from writing it.
    let outside = tempfile::Builder::new()
        .prefix("openshell-escape-")
        .tempdir_in("/var/lib")
        .unwrap();
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(outside.path().join("f"), "data\n").unwrap();
    // What the agent leaves behind: a link it owns where the policy names
    // a read-write directory of the workspace.
    let planted = dir.path().join("data");
    std::os::unix::fs::symlink(outside.path(), &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(65534), Some(65534)).unwrap();
    let policy = format!(
        "version: 1\nfilesystem_policy:\n  include_workdir: false\n  read_only: [/usr, /lib, /lib64, /bin, /etc, {o}]\n  read_write: [/tmp, /sandbox/data]\n",
        o = outside.path().display()
    );
    let script = format!(
        "cat {o}/f; echo pwned > /sandbox/data/x; echo pwned > {o}/y; echo done",
        o = outside.path().display()
    );
    let outcome = sandbox().policy(&policy).workdir(dir.path()).sh(&script);
    assert_eq!(outcome.stdout, "data\ndone\n", "{outcome:#?}");
    assert!(
        !outside.path().join("x").exists(),
        "wrote through the link: {outcome:#?}"
    );
    assert!(!outside.path().join("y").exists());
    assert!(
        outcome.stderr.contains("/sandbox/data is a symbolic link"),
        "the refusal must be reported: {outcome:#?}"
    );
}

/// Escape: a world-connectable UNIX socket the policy does not list (under
/// `/var/lib`) was reachable, since Landlock before ABI 9 does not govern
/// `connect(2)`. The sandbox's root now holds only what the policy lists,
/// so the socket, its directory and every other unlisted host path do not
/// exist inside: no connect, no stat, no inotify watch.
#[test]
fn unlisted_host_paths_do_not_exist_inside_not_even_a_socket() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("openshell-escape-")
        .tempdir_in("/var/lib")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = dir.path().join("sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(dir.path().join("file"), "12345").unwrap();
    let script = format!(
        "import socket, os, ctypes\n\
         s = socket.socket(socket.AF_UNIX)\n\
         try:\n    s.connect({sock:?}); print('connected')\nexcept OSError as e:\n    print('connect', e.errno)\n\
         try:\n    print('stat', os.stat({file:?}).st_size)\nexcept OSError as e:\n    print('stat', e.errno)\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         fd = libc.inotify_init()\n\
         rc = libc.inotify_add_watch(fd, {dir:?}.encode(), 0xfff)\n\
         print('watch', rc if rc >= 0 else ctypes.get_errno())\n\
         print('var-log', os.path.exists('/var/log'), 'work', os.path.exists('/var/lib'))\n",
        sock = socket.to_str().unwrap(),
        file = dir.path().join("file").to_str().unwrap(),
        dir = dir.path().to_str().unwrap(),
    );
    let outcome = sandbox().python(&script);
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the host socket accepted a connection"
    );
    assert_eq!(
        outcome.stdout, "connect 2\nstat 2\nwatch 2\nvar-log False work False\n",
        "{outcome:#?}"
    );
}
