//! The dashboard's state and what each key does to it. No terminal and no
//! network here: keys become [`Action`]s the loop carries out, and what the
//! gateway says arrives as [`Update`]s.

use std::collections::VecDeque;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::Value;

use openshell_policy::merge::{NewEndpoint, Operation, default_rule_name};
use openshell_proto::v1 as pb;

/// How many decisions and gateway events are kept per sandbox.
const KEEP: usize = 500;

/// One egress decision, as the supervisor logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub time: String,
    /// `allow`, `audit` or `deny`.
    pub verdict: String,
    pub binary: String,
    pub host: String,
    pub port: u16,
    pub request: String,
    pub reason: String,
}

impl Decision {
    /// A decision from its JSON log line; `None` for anything else.
    pub fn from_json(fields: &Value) -> Option<Decision> {
        let text = |key: &str| {
            fields
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let verdict = text("decision");
        if verdict.is_empty() {
            return None;
        }
        let request = match (
            fields.get("method").and_then(Value::as_str),
            fields.get("path").and_then(Value::as_str),
        ) {
            (Some(method), Some(path)) => format!("{method} {path}"),
            _ => String::new(),
        };
        Some(Decision {
            time: text("time").get(11..19).unwrap_or_default().to_owned(),
            verdict,
            binary: text("binary"),
            host: text("host"),
            port: fields
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(0),
            request,
            reason: match (text("layer"), text("reason")) {
                (layer, reason) if layer.is_empty() => reason,
                (layer, reason) => format!("{layer}: {reason}"),
            },
        })
    }

    /// The `policy update` that would admit this connection: its endpoint,
    /// for its binary.
    pub fn operation(&self) -> Result<Operation, String> {
        let endpoint = NewEndpoint::parse(&format!("{}:{}", bracketed(&self.host), self.port))?;
        Ok(Operation::AddEndpoint {
            rule: default_rule_name(&endpoint.host, endpoint.port),
            endpoint,
            binaries: if self.binary.is_empty() {
                Vec::new()
            } else {
                vec![self.binary.clone()]
            },
        })
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// What the gateway told the dashboard.
#[derive(Debug)]
pub enum Update {
    Sandboxes(Vec<pb::Sandbox>),
    /// A log line of `sandbox`: `source` is `sandbox` or `gateway`.
    Log {
        sandbox: String,
        source: String,
        json: String,
    },
    Policy {
        sandbox: String,
        revision: Option<pb::PolicyRevision>,
    },
    Error(String),
}

/// Which panel the arrows move in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Sandboxes,
    Egress,
}

/// A question the dashboard is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialog {
    ConfirmDelete(String),
    /// A `policy update` proposal: its diff, applied on `y`.
    Proposal {
        sandbox: String,
        summary: String,
        diff: Vec<String>,
        scroll: u16,
    },
}

/// What the loop should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Attach (or open a shell) with `sandbox connect`.
    Connect(String),
    /// A login shell by `sandbox exec --tty`.
    Shell(String),
    Delete(String),
    Stop(String),
    Start(String),
    /// Compute the update admitting a denied decision.
    Propose {
        sandbox: String,
        decision: Decision,
    },
    /// Store the proposal the dialog shows.
    Apply(String),
}

/// The dashboard.
#[derive(Debug)]
pub struct App {
    pub gateway: String,
    pub workspace: String,
    pub sandboxes: Vec<pb::Sandbox>,
    pub selected: usize,
    pub focus: Focus,
    /// The selected sandbox's decisions, newest last.
    pub decisions: VecDeque<Decision>,
    pub decision_selected: usize,
    /// The selected sandbox's lifecycle and policy events, newest last.
    pub events: VecDeque<String>,
    pub policy: Option<pb::PolicyRevision>,
    /// The last thing worth saying (an outcome or an error).
    pub status: String,
    pub dialog: Option<Dialog>,
}

impl App {
    pub fn new(gateway: &str, workspace: &str) -> App {
        App {
            gateway: gateway.to_owned(),
            workspace: workspace.to_owned(),
            sandboxes: Vec::new(),
            selected: 0,
            focus: Focus::Sandboxes,
            decisions: VecDeque::new(),
            decision_selected: 0,
            events: VecDeque::new(),
            policy: None,
            status: String::new(),
            dialog: None,
        }
    }

    /// The sandbox the cursor is on.
    pub fn current(&self) -> Option<&pb::Sandbox> {
        self.sandboxes.get(self.selected)
    }

    pub fn current_name(&self) -> Option<String> {
        self.current().map(|s| s.name.clone())
    }

    fn select(&mut self, index: usize) {
        let before = self.current_name();
        self.selected = index.min(self.sandboxes.len().saturating_sub(1));
        if self.current_name() != before {
            self.decisions.clear();
            self.events.clear();
            self.decision_selected = 0;
            self.policy = None;
        }
    }

    /// Takes in what the gateway said.
    pub fn update(&mut self, update: Update) {
        match update {
            Update::Sandboxes(mut sandboxes) => {
                sandboxes.sort_by(|a, b| a.name.cmp(&b.name));
                let keep = self.current_name();
                self.sandboxes = sandboxes;
                let index = keep
                    .and_then(|name| self.sandboxes.iter().position(|s| s.name == name))
                    .unwrap_or(self.selected);
                self.select(index);
            }
            Update::Log {
                sandbox,
                source,
                json,
            } => {
                if Some(&sandbox) != self.current_name().as_ref() {
                    return;
                }
                let fields: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
                if source == "sandbox" {
                    if let Some(decision) = Decision::from_json(&fields) {
                        push(&mut self.decisions, decision);
                    }
                } else {
                    let time = fields
                        .get("time")
                        .and_then(Value::as_str)
                        .and_then(|t| t.get(11..19))
                        .unwrap_or("")
                        .to_owned();
                    let message = fields
                        .get("message")
                        .and_then(Value::as_str)
                        .map_or_else(|| json.clone(), str::to_owned);
                    push(&mut self.events, format!("{time} {message}"));
                }
            }
            Update::Policy { sandbox, revision } => {
                if Some(&sandbox) == self.current_name().as_ref() {
                    self.policy = revision;
                }
            }
            Update::Error(message) => self.status = format!("✗ {message}"),
        }
    }

    /// What `key` does.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
            return Action::Quit;
        }
        if let Some(dialog) = &mut self.dialog {
            return match (dialog.clone(), key.code) {
                (Dialog::ConfirmDelete(name), KeyCode::Char('y')) => {
                    self.dialog = None;
                    Action::Delete(name)
                }
                (Dialog::Proposal { sandbox, .. }, KeyCode::Char('y')) => {
                    self.dialog = None;
                    Action::Apply(sandbox)
                }
                (Dialog::Proposal { .. }, KeyCode::Down | KeyCode::Char('j')) => {
                    if let Dialog::Proposal { scroll, .. } = dialog {
                        *scroll = scroll.saturating_add(1);
                    }
                    Action::None
                }
                (Dialog::Proposal { .. }, KeyCode::Up | KeyCode::Char('k')) => {
                    if let Dialog::Proposal { scroll, .. } = dialog {
                        *scroll = scroll.saturating_sub(1);
                    }
                    Action::None
                }
                (_, KeyCode::Char('n') | KeyCode::Esc | KeyCode::Char('q')) => {
                    self.dialog = None;
                    self.status = "cancelled".to_owned();
                    Action::None
                }
                _ => Action::None,
            };
        }
        let name = self.current_name();
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
            KeyCode::Tab | KeyCode::BackTab => {
                self.focus = match self.focus {
                    Focus::Sandboxes => {
                        // Onto the newest decision: the one just seen.
                        self.decision_selected = self.decisions.len().saturating_sub(1);
                        Focus::Egress
                    }
                    Focus::Egress => Focus::Sandboxes,
                };
                Action::None
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.step(1);
                Action::None
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.step(-1);
                Action::None
            }
            KeyCode::Enter | KeyCode::Char('c') => name.map_or(Action::None, Action::Connect),
            KeyCode::Char('e') => name.map_or(Action::None, Action::Shell),
            KeyCode::Char('d') => {
                if let Some(name) = name {
                    self.dialog = Some(Dialog::ConfirmDelete(name));
                }
                Action::None
            }
            KeyCode::Char('s') => match self.current() {
                Some(s) if s.phase == "Stopped" => Action::Start(s.name.clone()),
                Some(s) => Action::Stop(s.name.clone()),
                None => Action::None,
            },
            KeyCode::Char('a') => {
                let decision = self.decisions.get(self.decision_selected).cloned();
                match (name, decision) {
                    (Some(sandbox), Some(decision)) if decision.verdict == "deny" => {
                        Action::Propose { sandbox, decision }
                    }
                    (Some(_), Some(_)) => {
                        self.status = "that decision was not a denial".to_owned();
                        Action::None
                    }
                    _ => {
                        self.status =
                            "select a denied decision first (Tab, then the arrows)".to_owned();
                        Action::None
                    }
                }
            }
            _ => Action::None,
        }
    }

    fn step(&mut self, delta: isize) {
        match self.focus {
            Focus::Sandboxes => {
                let next = self.selected.saturating_add_signed(delta);
                self.select(next);
            }
            Focus::Egress => {
                let last = self.decisions.len().saturating_sub(1);
                self.decision_selected = self
                    .decision_selected
                    .saturating_add_signed(delta)
                    .min(last);
            }
        }
    }

    /// Shows a computed proposal.
    pub fn propose(&mut self, sandbox: &str, decision: &Decision, base: &str, yaml: &str) {
        let binary = if decision.binary.is_empty() {
            "any program".to_owned()
        } else {
            decision.binary.clone()
        };
        let diff = diff(base, yaml);
        // Opened at the change, with a little context above it.
        let first_change = diff.iter().position(|l| !l.starts_with("  ")).unwrap_or(0);
        self.dialog = Some(Dialog::Proposal {
            sandbox: sandbox.to_owned(),
            summary: format!(
                "Allow {binary} to reach {}:{} in sandbox {sandbox}?",
                decision.host, decision.port
            ),
            scroll: u16::try_from(first_change.saturating_sub(3)).unwrap_or(0),
            diff,
        });
    }
}

fn push<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() == KEEP {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// A line diff of two small texts: `  ` unchanged, `- ` removed, `+ ` added.
pub fn diff(before: &str, after: &str) -> Vec<String> {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    // Longest common subsequence, by lengths of suffixes.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(format!("  {}", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn sandbox(name: &str, phase: &str) -> pb::Sandbox {
        pb::Sandbox {
            name: name.into(),
            phase: phase.into(),
            ..Default::default()
        }
    }

    const DENY: &str = r#"{"time":"2026-12-07T21:00:01.123Z","decision":"deny","binary":"/usr/bin/curl","host":"api.example.com","port":443,"layer":"l4","reason":"network connections not allowed by policy","kind":"CONNECT"}"#;

    #[test]
    fn a_denied_decision_becomes_the_update_that_admits_it_shown_as_a_diff() {
        let mut app = App::new("gw", "default");
        app.update(Update::Sandboxes(vec![
            sandbox("b", "Ready"),
            sandbox("a", "Ready"),
        ]));
        assert_eq!(app.current_name().as_deref(), Some("a"), "sorted by name");
        app.update(Update::Log {
            sandbox: "a".into(),
            source: "sandbox".into(),
            json: DENY.into(),
        });
        app.update(Update::Log {
            sandbox: "b".into(),
            source: "sandbox".into(),
            json: DENY.into(),
        });
        assert_eq!(
            app.decisions.len(),
            1,
            "another sandbox's line is not shown"
        );
        let decision = &app.decisions[0];
        assert_eq!(
            (
                decision.time.as_str(),
                decision.verdict.as_str(),
                decision.port
            ),
            ("21:00:01", "deny", 443)
        );
        assert_eq!(
            decision.reason,
            "l4: network connections not allowed by policy"
        );
        let Action::Propose { sandbox, decision } = app.on_key(key(KeyCode::Char('a'))) else {
            panic!("no proposal");
        };
        assert_eq!(sandbox, "a");
        let Operation::AddEndpoint { rule, binaries, .. } = decision.operation().unwrap() else {
            panic!("not an endpoint");
        };
        assert_eq!(rule, "allow_api_example_com_443");
        assert_eq!(binaries, ["/usr/bin/curl"]);
        app.propose(
            "a",
            &decision,
            "version: 1\n",
            "version: 1\nnetwork_policies: {}\n",
        );
        let Some(Dialog::Proposal { diff, .. }) = &app.dialog else {
            panic!("no dialog");
        };
        assert_eq!(diff, &["  version: 1", "+ network_policies: {}"]);
        assert_eq!(
            app.on_key(key(KeyCode::Char('y'))),
            Action::Apply("a".into())
        );
        assert!(app.dialog.is_none());
    }

    #[test]
    fn keys_select_confirm_and_quit() {
        let mut app = App::new("gw", "default");
        app.update(Update::Sandboxes(vec![
            sandbox("a", "Ready"),
            sandbox("b", "Stopped"),
        ]));
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.current_name().as_deref(), Some("b"));
        assert_eq!(
            app.on_key(key(KeyCode::Char('s'))),
            Action::Start("b".into())
        );
        app.on_key(key(KeyCode::Up));
        assert_eq!(
            app.on_key(key(KeyCode::Char('s'))),
            Action::Stop("a".into())
        );
        assert_eq!(app.on_key(key(KeyCode::Char('d'))), Action::None);
        assert_eq!(
            app.on_key(key(KeyCode::Char('n'))),
            Action::None,
            "cancelled"
        );
        assert!(app.dialog.is_none());
        app.on_key(key(KeyCode::Char('d')));
        assert_eq!(
            app.on_key(key(KeyCode::Char('y'))),
            Action::Delete("a".into())
        );
        assert_eq!(app.on_key(key(KeyCode::Char('a'))), Action::None);
        assert!(app.status.contains("select a denied decision"));
        assert_eq!(app.on_key(key(KeyCode::Enter)), Action::Connect("a".into()));
        assert_eq!(app.on_key(key(KeyCode::Char('q'))), Action::Quit);
    }

    #[test]
    fn diffs_mark_what_changed() {
        assert_eq!(
            diff("a\nb\nc\n", "a\nx\nc\nd\n"),
            ["  a", "- b", "+ x", "  c", "+ d"]
        );
        assert!(diff("same\n", "same\n").iter().all(|l| l.starts_with("  ")));
    }
}
