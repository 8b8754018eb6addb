//! `openshell term` in a real terminal: tmux runs the dashboard against a
//! real gateway; the test reads the screen (capture-pane) and types
//! (send-keys) as a person would.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use openshell_test_support::home::{Home, ok, openshell_bin, start, text};

/// A tmux server of this test's own, with the dashboard in it.
struct Screen {
    socket: PathBuf,
}

impl Screen {
    fn open(home: &Home, args: &[&str]) -> Screen {
        let socket = home.dir.path().join("tmux.sock");
        let mut line = vec![
            "env".to_owned(),
            format!(
                "XDG_CONFIG_HOME={}",
                home.dir.path().join("config").display()
            ),
            format!("XDG_STATE_HOME={}", home.dir.path().join("state").display()),
            format!("OPENSHELL_SYSTEM_GATEWAY_DIR={}", home.system().display()),
            "TERM=xterm-256color".to_owned(),
            openshell_bin().to_owned(),
            "term".to_owned(),
        ];
        line.extend(args.iter().map(|a| (*a).to_owned()));
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["new-session", "-d", "-s", "dash", "-x", "150", "-y", "40"])
            .args(&line)
            .output()
            .expect("tmux (Debian: apt-get install tmux)");
        assert!(out.status.success(), "{}", text(&out.stderr));
        Screen { socket }
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    fn capture(&self) -> String {
        text(&self.tmux(&["capture-pane", "-p", "-t", "dash"]).stdout)
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.tmux(&["send-keys", "-t", "dash", key]);
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Waits until every one of `wanted` is on the screen.
    fn wait_for(&self, wanted: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.capture();
            if wanted.iter().all(|w| screen.contains(w)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {wanted:?} on:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until one line of the screen holds every one of `wanted`.
    fn wait_for_line(&self, wanted: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.capture();
            if screen
                .lines()
                .any(|line| wanted.iter().all(|w| line.contains(w)))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {wanted:?} on one line of:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn alive(&self) -> bool {
        self.tmux(&["has-session", "-t", "dash"]).status.success()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

#[test]
fn the_dashboard_shows_decisions_and_turns_a_denial_into_a_policy_update() {
    let home = Home::new();
    start(&home);
    for name in ["demo", "other"] {
        ok(&home.openshell(&["sandbox", "create", "--name", name, "--detach"]));
    }
    // A denial to act on: the proxy refuses before any lookup.
    home.openshell(&[
        "sandbox",
        "exec",
        "-n",
        "demo",
        "--",
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "http://upstream.invalid/path",
    ]);
    let screen = Screen::open(&home, &[]);
    screen.wait_for(&["gateway openshell · workspace default", "other"]);
    screen.wait_for_line(&["> demo", "Ready"]);
    screen.wait_for(&[
        "deny",
        "/usr/bin/curl",
        "upstream.invalid:80 GET /path",
        "l4:",
    ]);

    // The denial becomes a proposal: the diff adds exactly that endpoint.
    screen.keys(&["Tab", "a"]);
    let proposal = screen.wait_for(&[
        "Proposed policy update",
        "Allow /usr/bin/curl to reach upstream.invalid:80 in sandbox demo?",
        "+   allow_upstream_invalid_80:",
        "+       - host: upstream.invalid",
        "+       - path: /usr/bin/curl",
    ]);
    assert!(!proposal.contains("- version"), "{proposal}");
    screen.keys(&["y"]);
    screen.wait_for(&["✓ Policy version 1 submitted to demo"]);
    screen.wait_for(&["Policy version 1 loaded"]);
    let policy = ok(&home.openshell(&["policy", "get", "demo", "--full"]));
    assert!(policy.contains("host: upstream.invalid"), "{policy}");
    assert!(policy.contains("path: /usr/bin/curl"), "{policy}");

    // Delete asks first; n keeps, y deletes.
    screen.keys(&["Tab", "Down", "d"]);
    screen.wait_for(&["Delete sandbox other and its workspace?"]);
    screen.keys(&["n"]);
    screen.wait_for(&["cancelled"]);
    assert_eq!(
        ok(&home.openshell(&["sandbox", "list", "--names"])),
        "demo\nother\n"
    );
    screen.keys(&["d", "y"]);
    screen.wait_for(&["✓ Deleted sandbox other"]);
    assert_eq!(
        ok(&home.openshell(&["sandbox", "list", "--names"])),
        "demo\n"
    );

    // Stop and start.
    screen.keys(&["Up", "s"]);
    screen.wait_for(&["✓ Stopped sandbox demo"]);
    screen.wait_for_line(&["> demo", "Stopped"]);
    screen.keys(&["s"]);
    screen.wait_for(&["✓ Started sandbox demo"]);
    screen.wait_for_line(&["> demo", "Ready"]);

    // A shell in the sandbox, then back to the dashboard.
    screen.keys(&["e"]);
    screen.keys(&["echo from-the-shell-$((6*7))", "Enter"]);
    screen.wait_for(&["from-the-shell-42"]);
    screen.keys(&["exit", "Enter"]);
    screen.wait_for(&["Egress · demo", "a allow the denial"]);

    screen.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while screen.alive() {
        assert!(Instant::now() < deadline, "q did not quit");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn term_needs_a_terminal_and_knows_its_themes() {
    let home = Home::new();
    start(&home);
    let out = home.openshell(&["term"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("openshell term needs a terminal"),
        "{}",
        text(&out.stderr)
    );
    let out = home.openshell(&["term", "--theme", "pink"]);
    assert_eq!(out.status.code(), Some(2));
    // Light and dark both draw the same dashboard.
    for theme in ["light", "dark"] {
        let screen = Screen::open(&home, &["--theme", theme]);
        screen.wait_for(&["OpenShell", "No sandboxes found."]);
        screen.keys(&["q"]);
    }
}
